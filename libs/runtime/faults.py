"""Fault injection for the chaos suite: named points where a process can be made to die.

Off unless OM_FAULTS names the point, so production never crashes here. A point fires once per
process (the chaos runner restarts the process and expects normal operation afterwards).
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

AFTER_DB_COMMIT_BEFORE_OFFSET_COMMIT = "after_db_commit_before_offset_commit"
# The broker acknowledged rows (published by the relay or right after the commit by the
# process that wrote them) and the process dies before deleting them: they are sent again.
AFTER_PUBLISH_BEFORE_OUTBOX_MARK = "after_publish_before_outbox_mark"
# A transaction with outbox rows its process claimed committed, and the process dies before
# publishing them: the relay must take them over.
AFTER_COMMIT_BEFORE_PUBLISH = "after_commit_before_publish"

_armed: set[str] = {p.strip() for p in os.environ.get("OM_FAULTS", "").split(",") if p.strip()}


def crash_point(name: str) -> None:
    if name in _armed:
        _armed.discard(name)
        log.critical("fault injection: crashing at %s", name)
        os._exit(137)
