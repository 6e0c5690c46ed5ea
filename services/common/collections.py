"""MongoDB collections that one service writes and others read: their names are a contract, defined once.

Reads, frames, images and cameras are in services/common/reads.py; agencies' sharing fields in
services/common/agencies.py. Each writer owns its collection's shape; the readers here are the portal (the
public figures) and services that check agencies' settings.
"""

from __future__ import annotations

AGENCIES = "agencies"  # written by identity
ALERTS = "alerts"  # written by hotlist
AUDIT_ENTRIES = "audit_entries"  # written by audit only (insert-only MongoDB role)
AUDIT_CHECKPOINTS = "audit_checkpoints"  # written by audit only
HOLDS = "holds"  # evidence holds, written by retention
RETENTION_REPORTS = "retention_reports"  # per-day deletion verification, written by retention
