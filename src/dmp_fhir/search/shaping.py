"""``_summary`` and ``_elements``: trimming resources for search answers."""

from __future__ import annotations

from functools import cache
from typing import Any

from ..errors import BadRequest
from ..registry import any_model

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
_ALWAYS = frozenset({"resourceType", "id", "meta"})
SUMMARY_MODES = ("true", "false", "text", "data", "count")


@cache
def _element_sets(rtype: str) -> tuple[frozenset[str], frozenset[str]]:
    """(summary elements, mandatory elements) of a type, from the R4B model metadata."""
    model = any_model(rtype)
    if model is None:
        return frozenset(), frozenset()
    summary: set[str] = set()
    mandatory: set[str] = set()
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra
        if not isinstance(extra, dict) or not extra.get("element_property"):
            continue
        key = field.alias or name
        if extra.get("summary_element_property"):
            summary.add(key)
        if extra.get("element_required"):
            mandatory.add(key)
    return frozenset(summary), frozenset(mandatory)


def _with_primitive_extensions(keys: frozenset[str] | set[str]) -> set[str]:
    return set(keys) | {f"_{k}" for k in keys}


def _mark_subsetted(resource: dict[str, Any]) -> dict[str, Any]:
    meta = dict(resource.get("meta") or {})
    tags = [t for t in meta.get("tag", []) if t.get("code") != "SUBSETTED"]
    meta["tag"] = [*tags, SUBSETTED]
    resource["meta"] = meta
    return resource


def shape(resource: dict[str, Any], summary: str | None, elements: list[str] | None) -> dict[str, Any]:
    """A copy of ``resource`` trimmed as asked (the original is never modified)."""
    if (summary in (None, "false")) and not elements:
        return resource
    rtype = resource.get("resourceType", "")
    summary_keys, mandatory = _element_sets(rtype)
    if summary == "true":
        keep = _with_primitive_extensions(summary_keys | mandatory) | _ALWAYS
    elif summary == "text":
        keep = _with_primitive_extensions({"text"} | mandatory) | _ALWAYS
    elif summary == "data":
        keep = {k for k in resource if k != "text"}
    elif elements:
        keep = _with_primitive_extensions(set(elements) | mandatory) | _ALWAYS
    else:
        return resource
    trimmed = {k: v for k, v in resource.items() if k in keep}
    if resource.get("contained") and "contained" not in trimmed:
        # A kept ``#id`` reference (PDSm's contained author…) keeps what it points to.
        pointed = _local_references(trimmed)
        kept = [c for c in resource["contained"] if isinstance(c, dict) and c.get("id") in pointed]
        while True:  # and what those point to (a contained role's practitioner, organisation)
            more = _local_references(kept) - {c.get("id") for c in kept}
            extra = [c for c in resource["contained"] if isinstance(c, dict) and c.get("id") in more]
            if not extra:
                break
            kept += extra
        if kept:
            trimmed["contained"] = kept
    return _mark_subsetted(trimmed)


def _local_references(value: Any) -> set[str]:
    """The ids of every ``#id`` reference inside ``value``."""
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("reference")
            if isinstance(ref, str) and ref.startswith("#") and len(ref) > 1:
                found.add(ref[1:])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def parse_summary(value: str | None) -> str | None:
    if value is None:
        return None
    if value not in SUMMARY_MODES:
        raise BadRequest(f"_summary must be one of {', '.join(SUMMARY_MODES)}.", code="value")
    return value


def parse_elements(value: str | None) -> list[str] | None:
    if not value:
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    for name in names:
        if not name.replace("[x]", "").isidentifier():
            raise BadRequest(f"_elements: '{name}' is not an element name.", code="value")
    return names
