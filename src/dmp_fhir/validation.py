"""Checks a FHIR JSON resource before it is stored: JSON shape rules, then the R4B model.

The stored form is the received JSON (not the model's dump), so these checks only decide
*whether* to accept; they never rewrite what the client sent.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from .errors import BadRequest, Issue, Unprocessable
from .registry import any_model

#: Deep nesting is refused long before Python's recursion limit.
MAX_DEPTH = 64
#: No element of a DMP resource needs more repetitions; more is an attack on memory and indexes.
MAX_ARRAY_ITEMS = 1000


def check_resource(resource: Any, *, expected_type: str | None = None) -> dict[str, Any]:
    """Validate ``resource`` (a parsed JSON value) and return it as a resource dict.

    Raises BadRequest for what is not a resource at all, Unprocessable for an invalid one.
    """
    if not isinstance(resource, dict):
        raise BadRequest("The body must be a JSON object holding a FHIR resource.", code="structure")
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        raise BadRequest("The resource has no resourceType.", code="structure")
    if expected_type is not None and rtype != expected_type:
        raise BadRequest(
            f"resourceType '{rtype}' does not match the endpoint's type '{expected_type}'.",
            code="invalid",
            expression=("resourceType",),
        )
    issues: list[Issue] = []
    _check_shape(resource, rtype, issues, 0)
    if issues:
        raise Unprocessable(issues[0].diagnostics, issues=issues[:50])
    model = any_model(rtype)
    if model is None:
        raise BadRequest(f"Unknown resourceType '{rtype}'.", code="not-supported")
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        issues = [_issue_from_pydantic(rtype, err) for err in exc.errors()[:50]]
        raise Unprocessable(
            f"{rtype} is not a valid FHIR R4 resource: {issues[0].diagnostics}", issues=issues
        ) from None
    except (ValueError, TypeError) as exc:  # fhir.resources raises these for some inputs
        raise Unprocessable(f"{rtype} is not a valid FHIR R4 resource: {exc}") from None
    return resource


def _check_shape(value: Any, path: str, issues: list[Issue], depth: int) -> None:
    """FHIR JSON rules the models do not enforce: no nulls, no empty values, safe keys."""
    if depth > MAX_DEPTH:
        issues.append(Issue("structure", f"Nesting deeper than {MAX_DEPTH} levels.", expression=(path,)))
        return
    if isinstance(value, dict):
        if not value:
            issues.append(Issue("invalid", "Empty objects are not allowed in FHIR JSON.", expression=(path,)))
        for key, item in value.items():
            child = f"{path}.{key}"
            if key.startswith("$") or "." in key or "\x00" in key:
                issues.append(Issue("structure", f"Illegal property name {key!r}.", expression=(path,)))
                continue
            if item is None:
                issues.append(Issue("invalid", "null is not allowed here in FHIR JSON.", expression=(child,)))
                continue
            if key == "div" and isinstance(item, str):
                continue
            _check_shape(item, child, issues, depth + 1)
    elif isinstance(value, list):
        if not value:
            issues.append(Issue("invalid", "Empty arrays are not allowed in FHIR JSON.", expression=(path,)))
        if len(value) > MAX_ARRAY_ITEMS:
            issues.append(
                Issue("too-costly", f"More than {MAX_ARRAY_ITEMS} repetitions.", expression=(path,))
            )
            return
        # Arrays of primitives may hold nulls paired with a `_name` extension array.
        for index, item in enumerate(value):
            if item is not None:
                _check_shape(item, f"{path}[{index}]", issues, depth + 1)
    elif isinstance(value, str):
        if value == "":
            issues.append(Issue("invalid", "Empty strings are not allowed in FHIR JSON.", expression=(path,)))
        elif "\x00" in value:
            issues.append(Issue("invalid", "NUL characters are not allowed.", expression=(path,)))


def _issue_from_pydantic(rtype: str, err: Any) -> Issue:
    path = rtype
    for part in err.get("loc", ()):
        if isinstance(part, int):
            path += f"[{part}]"
        elif part not in ("__root__",):
            path += f".{part}"
    msg = str(err.get("msg", "invalid value"))
    kind = str(err.get("type", ""))
    code = "required" if "missing" in kind else "structure" if kind == "extra_forbidden" else "value"
    if kind == "extra_forbidden":
        msg = "Unknown element."
    return Issue(code, f"{path}: {msg}", expression=(path,))
