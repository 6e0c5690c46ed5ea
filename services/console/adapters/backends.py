"""gRPC channels and stubs of the services the console talks to (it holds no database client)."""

from __future__ import annotations

from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.grpc_server import Dependency
from services.common.tls import secure_channel
from services.console.settings import ConsoleSettings
from services.ingest.client import CameraRegistry
from sightline.audit.v1 import audit_pb2_grpc
from sightline.hotlist.v1 import hotlist_pb2_grpc
from sightline.identity.v1 import identity_pb2_grpc
from sightline.retention.v1 import retention_pb2_grpc
from sightline.search.v1 import search_pb2_grpc

IMAGE_BYTES = 32 * 1024 * 1024


class Backends:
    def __init__(self, settings: ConsoleSettings):
        opts = [("grpc.max_receive_message_length", IMAGE_BYTES)]
        self._channels = {
            name: secure_channel(address, settings, opts)
            for name, address in (("identity", settings.identity_address), ("search", settings.search_address),
                                  ("hotlist", settings.hotlist_address), ("audit", settings.audit_address),
                                  ("retention", settings.retention_address),
                                  ("ingest", settings.ingest_address)) if address
        }
        self.identity = identity_pb2_grpc.IdentityServiceStub(self._channels["identity"])
        self.search = search_pb2_grpc.SearchServiceStub(self._channels["search"])
        self.hotlists = hotlist_pb2_grpc.HotlistServiceStub(self._channels["hotlist"])
        self.alerts = hotlist_pb2_grpc.AlertServiceStub(self._channels["hotlist"])
        self.audit = audit_pb2_grpc.AuditServiceStub(self._channels["audit"])
        # Evidence holds and deletion reports; None when no retention service is configured.
        self.retention = (retention_pb2_grpc.RetentionServiceStub(self._channels["retention"])
                          if "retention" in self._channels else None)
        self.timeout = settings.call_timeout_s
        # The camera registry (agency admins' camera pages); None when no ingest address is configured.
        self.cameras = (CameraRegistry(self._channels["ingest"], self.timeout) if "ingest" in self._channels
                        else None)

    def dependencies(self) -> list[Dependency]:
        """The console is ready while identity (logins) and search answer their health checks."""
        def check(name: str):
            stub = health_pb2_grpc.HealthStub(self._channels[name])

            async def run() -> None:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if reply.status != health_pb2.HealthCheckResponse.SERVING:
                    raise ConnectionError(f"{name} not serving")

            return Dependency(name, run)

        return [check("identity"), check("search")]

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
