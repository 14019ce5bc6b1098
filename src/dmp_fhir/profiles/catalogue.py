"""Search over the in-memory conformance resources, and ValueSet ``$expand``.

There are a few dozen definitions: matching runs in Python over all of them, with the same
string semantics as the database search (case- and accent-insensitive prefix, ``:exact``,
``:contains``) and comma-separated alternatives.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from ..errors import BadRequest, Issue
from ..registry import CONFORMANCE_TYPES
from ..search.text import normalize
from ..storage.store import format_instant, now_utc
from .conformance import Conformance

#: Result parameters the catalogue understands (others are ignored or refused as usual).
CONTROLS = frozenset({"_count", "_offset", "_format", "_pretty", "_total"})


@dataclass(slots=True)
class CatalogueResult:
    matches: list[dict[str, Any]]
    total: int
    offset: int
    count: int
    warnings: list[Issue] = field(default_factory=list)


def search_definitions(
    conformance: Conformance, rtype: str, params: list[tuple[str, str]], *, strict: bool, default_count: int
) -> CatalogueResult:
    known = {p.name: p for p in CONFORMANCE_TYPES[rtype].search_params}
    warnings: list[Issue] = []
    candidates = sorted(conformance.resources[rtype].values(), key=lambda r: str(r["id"]))
    for key, raw in params:
        if key in CONTROLS:
            continue
        if "\x00" in raw:
            raise BadRequest("NUL characters are not allowed in search values.", code="value")
        name, _, modifier = key.partition(":")
        param = known.get(name)
        if param is None:
            message = f"Unknown search parameter '{name}' for {rtype}."
            if strict:
                raise BadRequest(message, code="not-supported")
            warnings.append(Issue("not-supported", f"{message} It was ignored.", severity="warning"))
            continue
        allowed = ("", "exact", "contains") if param.type == "string" else ("",)
        if modifier not in allowed:
            raise BadRequest(
                f"Modifier ':{modifier}' is not supported on {rtype}.{name}.", code="not-supported"
            )
        values = [v for v in raw.split(",") if v]
        if not values:
            raise BadRequest(f"Search parameter '{key}' has no value.", code="value")
        field_name = "id" if name == "_id" else name
        candidates = [r for r in candidates if _matches(r.get(field_name), values, param.type, modifier)]
    offset = _int_param(params, "_offset", 0)
    count = _int_param(params, "_count", default_count)
    return CatalogueResult(candidates[offset : offset + count], len(candidates), offset, count, warnings)


def _matches(value: Any, wanted: list[str], ptype: str, modifier: str) -> bool:
    if not isinstance(value, str):
        return False
    if ptype != "string":
        return value in wanted
    if modifier == "exact":
        return value in wanted
    folded = normalize(value)
    if modifier == "contains":
        return any(normalize(w) in folded for w in wanted)
    return any(folded.startswith(normalize(w)) for w in wanted)


def _int_param(params: list[tuple[str, str]], name: str, default: int) -> int:
    raw = next((v for k, v in params if k == name), None)
    if raw is None:
        return default
    if not raw.isdigit():
        raise BadRequest(f"{name} must be a non-negative integer, not '{raw}'.", code="value")
    return int(raw)


def expand(
    conformance: Conformance,
    value_set: dict[str, Any],
    *,
    text_filter: str | None,
    offset: int,
    count: int | None,
) -> dict[str, Any]:
    """The value set with an ``expansion``: every concept (``filter``: code or display contains
    the text, case- and accent-insensitive), paged by offset/count."""
    concepts = conformance.terminology.expand(str(value_set["url"]))
    if text_filter:
        needle = normalize(text_filter)
        concepts = tuple(
            c for c in concepts if needle in normalize(c.code) or needle in normalize(c.display or "")
        )
    page = concepts[offset : offset + count if count is not None else None]
    parameters: list[dict[str, Any]] = [{"name": "offset", "valueInteger": offset}]
    if count is not None:
        parameters.append({"name": "count", "valueInteger": count})
    if text_filter:
        parameters.append({"name": "filter", "valueString": text_filter})
    expansion: dict[str, Any] = {
        "identifier": f"urn:uuid:{uuid.uuid4()}",
        "timestamp": format_instant(now_utc()),
        "total": len(concepts),
        "offset": offset,
        "parameter": parameters,
    }
    if page:
        expansion["contains"] = [c.to_json() for c in page]
    out = {k: v for k, v in value_set.items() if k != "compose"}
    out["expansion"] = expansion
    return out
