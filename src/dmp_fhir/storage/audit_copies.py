"""The served copies of the trail, checked against the log they are copied from.

Only the log (``AuditEvent_history``) is hash-chained, but reads and searches use the served
``AuditEvent`` collection: its ``_s_*`` (search) and ``_p_*`` (policy) fields decide who sees an
event. A deleted copy, or one whose ``_p_patient`` or ``_s_patient`` was changed, makes a
break-glass access vanish from the patient's view while the chain still holds. So a served copy
must equal its log entry, field for field (only ``_id`` differs: the resource id instead of
``<id>/1``); ``verify`` reports every difference by sequence number and start-up ``repair``
rewrites the copy from the log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: How many differences a report lists (the count is always exact).
MAX_LISTED = 1000


@dataclass(frozen=True, slots=True)
class ServedDifference:
    """One served copy that does not match the log; ``seq`` is None for a copy the log lacks."""

    seq: int | None
    event_id: str
    problem: str

    def __str__(self) -> str:
        where = f"event #{self.seq}" if self.seq is not None else "no log entry"
        return f"{where} (AuditEvent/{self.event_id}): {self.problem}"


def served_form(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The served copy a log entry must have."""
    return {**entry, "_id": entry["_rid"]}


def compare(entry: Mapping[str, Any], served: Mapping[str, Any] | None) -> str | None:
    """What is wrong with ``served`` as the copy of the log ``entry``; None when it matches."""
    if served is None:
        return "the served copy is missing"
    expected = served_form(entry)
    keys = expected.keys() | served.keys()
    fields = sorted(k for k in keys if (k in expected) != (k in served) or expected.get(k) != served.get(k))
    if not fields:
        return None
    return "the served copy differs from the log in " + ", ".join(fields)
