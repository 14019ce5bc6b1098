"""Which extracted fields get an index (MongoDB uses them; FerretDB ignores them for free)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from ..errors import Unprocessable
from ..registry import RESOURCE_TYPES
from .params import field_name, params_for

#: MongoDB allows 64 indexes per collection; keep well below.
MAX_INDEXES_PER_TYPE = 40

#: Fields left unindexed: an AuditEvent names every resource a search returned (up to 200),
#: and FerretDB's PostgreSQL backend indexes a whole array as one btree row, which it refuses
#: beyond 2704 bytes — the event, and every event of its group commit, would fail to store.
#: Nothing leads a query with them (the trail is read by patient).
UNINDEXED = frozenset({("AuditEvent", "entity")})


def index_fields() -> dict[str, list[str]]:
    """Per type, the search fields that can lead a query: tokens, references, strings, dates."""
    out: dict[str, list[str]] = {}
    for rtype in RESOURCE_TYPES:
        fields: list[str] = []
        for param in params_for(rtype).values():
            if param.name in ("_id", "_lastUpdated") or (rtype, param.name) in UNINDEXED:
                continue
            if param.type in ("token", "reference", "string", "uri"):
                fields.append(field_name(param.name))
            elif param.type == "date":
                fields.append(f"{field_name(param.name)}_lo")
        out[rtype] = sorted(set(fields))[:MAX_INDEXES_PER_TYPE]
    return out


#: Bytes of values one search field may hold in one resource. PostgreSQL (under FerretDB)
#: refuses an index row over 8191 bytes, and would fail the write half done; MongoDB has no such
#: limit, but no sensible resource comes near it.
MAX_FIELD_BYTES = 6000


def check_field_sizes(fields: Mapping[str, Any]) -> None:
    """Refuse (422) a resource whose values for one search parameter are too large to index."""
    for name, value in fields.items():
        if name.startswith("_s_") and len(orjson.dumps(value, default=str)) > MAX_FIELD_BYTES:
            raise Unprocessable(
                f"Too many or too long values for the search parameter '{name[3:]}'.",
                code="too-costly",
            )
