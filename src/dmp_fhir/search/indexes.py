"""Which extracted fields get an index (MongoDB uses them; FerretDB ignores them for free)."""

from __future__ import annotations

from ..registry import RESOURCE_TYPES
from .params import field_name, params_for

#: MongoDB allows 64 indexes per collection; keep well below.
MAX_INDEXES_PER_TYPE = 40


def index_fields() -> dict[str, list[str]]:
    """Per type, the search fields that can lead a query: tokens, references, strings, dates."""
    out: dict[str, list[str]] = {}
    for rtype in RESOURCE_TYPES:
        fields: list[str] = []
        for param in params_for(rtype).values():
            if param.name in ("_id", "_lastUpdated"):
                continue
            if param.type in ("token", "reference", "string", "uri"):
                fields.append(field_name(param.name))
            elif param.type == "date":
                fields.append(f"{field_name(param.name)}_lo")
        out[rtype] = sorted(set(fields))[:MAX_INDEXES_PER_TYPE]
    return out
