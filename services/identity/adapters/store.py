"""MongoDB side of identity: agencies and users."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from services.common.agencies import AGENCIES, HOTLIST_SHARE_WITH
from services.common.sealing import open_totp, seal_totp
from services.common.storage import Document

USERS = "users"
# The stored form of a user's TOTP secret: sealed with the master key (AES-256-GCM, bound to the user id).
TOTP_SEALED = "totp_sealed"


class IdentityStore:
    """Users' TOTP secrets are sealed with the master key before they are stored and opened when a user is read
    (`totp_secret` in the returned document only). A user stored before sealing (a clear `totp_secret`) is
    sealed the first time it is read."""

    def __init__(self, db: AsyncDatabase[Document], master_key: bytes):
        self._db = db
        self._master = master_key

    async def ensure_indexes(self) -> None:
        await self._db[USERS].create_indexes([IndexModel([("username", ASCENDING)], name="username", unique=True),
                                              IndexModel([("agency_id", ASCENDING)], name="agency")])
        await self._db[AGENCIES].create_index([("share_with", ASCENDING)], name="share_with")

    async def agency(self, agency_id: str) -> dict[str, Any] | None:
        return await self._db[AGENCIES].find_one({"_id": agency_id})

    async def upsert_agency(self, agency_id: str, name: str) -> None:
        await self._db[AGENCIES].update_one(
            {"_id": agency_id},
            {"$setOnInsert": {"name": name, "share_with": [], HOTLIST_SHARE_WITH: [], "case_number_required": False}},
            upsert=True)

    async def set_agency_policy(self, agency_id: str, share_with: list[str], case_number_required: bool,
                                hotlist_share_with: list[str]) -> dict:
        return await self._db[AGENCIES].find_one_and_update(
            {"_id": agency_id}, {"$set": {"share_with": share_with, "case_number_required": case_number_required,
                                          HOTLIST_SHARE_WITH: hotlist_share_with}},
            return_document=ReturnDocument.AFTER)

    async def sharing_with(self, agency_id: str) -> list[str]:
        """Agencies that share their reads with `agency_id`."""
        return sorted(d["_id"] for d in await self._db[AGENCIES].find({"share_with": agency_id}, {"_id": 1})
                      .to_list(None))

    async def agency_has_admin(self, agency_id: str) -> bool:
        return await self._db[USERS].find_one({"agency_id": agency_id, "roles": "agency_admin"}, {"_id": 1}) is not None

    async def user_by_name(self, username: str) -> dict[str, Any] | None:
        return await self._opened(await self._db[USERS].find_one({"username": username}))

    async def user(self, user_id: str) -> dict[str, Any] | None:
        return await self._opened(await self._db[USERS].find_one({"_id": user_id}))

    async def _opened(self, doc: dict[str, Any] | None) -> dict[str, Any] | None:
        if doc is None:
            return None
        if TOTP_SEALED in doc:
            doc["totp_secret"] = open_totp(self._master, doc["_id"], doc.pop(TOTP_SEALED))
        elif doc.get("totp_secret"):  # stored in clear before sealing: seal it now
            await self._db[USERS].update_one(
                {"_id": doc["_id"], "totp_secret": doc["totp_secret"]},
                {"$set": {TOTP_SEALED: seal_totp(self._master, doc["_id"], doc["totp_secret"])},
                 "$unset": {"totp_secret": ""}})
        return doc

    async def users(self, agency_id: str) -> list[dict[str, Any]]:
        """The agency's users by username, without their password hashes and TOTP secrets."""
        hidden = {"password_hash": 0, "totp_secret": 0, TOTP_SEALED: 0}
        return await self._db[USERS].find({"agency_id": agency_id}, hidden).sort("username", ASCENDING).to_list(None)

    async def insert_user(self, doc: dict[str, Any]) -> None:
        stored = {k: v for k, v in doc.items() if k != "totp_secret"}
        stored[TOTP_SEALED] = seal_totp(self._master, doc["_id"], doc["totp_secret"])
        await self._db[USERS].insert_one(stored)

    async def update_user(self, user_id: str, agency_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        """Apply `changes` to the agency's user; a new `totp_secret` (ResetTotp) is stored sealed."""
        update: dict[str, Any] = {"$set": dict(changes)}
        if "totp_secret" in changes:
            update["$set"][TOTP_SEALED] = seal_totp(self._master, user_id, update["$set"].pop("totp_secret"))
            update["$unset"] = {"totp_secret": ""}
        doc = await self._db[USERS].find_one_and_update({"_id": user_id, "agency_id": agency_id}, update,
                                                        return_document=ReturnDocument.AFTER)
        if doc is not None:
            doc.pop(TOTP_SEALED, None)  # the caller has the secret it set, or needs none
        return doc

    async def claim_totp_step(self, user_id: str, totp_step: int, changes: dict[str, Any]) -> bool:
        """Mark TOTP step `totp_step` used (with `changes`); False when that step or a later one was already
        used: a code works once, for whatever it was checked."""
        result = await self._db[USERS].update_one({"_id": user_id, "last_totp_step": {"$lt": totp_step}},
                                                  {"$set": {"last_totp_step": totp_step, **changes}})
        return result.modified_count == 1
