"""Reading the ``Parameters`` body of an operation (400 for anything malformed)."""

from __future__ import annotations

from typing import Any

from ..errors import BadRequest


class OperationParameters:
    def __init__(self, body: Any, operation: str) -> None:
        if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
            raise BadRequest(f"${operation} expects a Parameters resource.", code="structure")
        self.operation = operation
        self.items: list[dict[str, Any]] = [p for p in body.get("parameter") or [] if isinstance(p, dict)]

    def all(self, name: str) -> list[dict[str, Any]]:
        return [p for p in self.items if p.get("name") == name]

    def value(self, name: str, kind: str, *, required: bool = False) -> Any:
        """``value<kind>`` (or ``resource`` for kind ``resource``) of the single ``name``."""
        found = self.all(name)
        if len(found) > 1:
            raise BadRequest(f"${self.operation}: '{name}' is given more than once.", code="structure")
        key = "resource" if kind == "resource" else f"value{kind}"
        value = found[0].get(key) if found else None
        if found and value is None:
            raise BadRequest(f"${self.operation}: '{name}' must carry {key}.", code="structure")
        if value is None and required:
            raise BadRequest(f"${self.operation}: the parameter '{name}' is required.", code="required")
        return value

    def values(self, name: str, kind: str) -> list[Any]:
        key = "resource" if kind == "resource" else f"value{kind}"
        out = []
        for p in self.all(name):
            if p.get(key) is None:
                raise BadRequest(f"${self.operation}: '{name}' must carry {key}.", code="structure")
            out.append(p[key])
        return out
