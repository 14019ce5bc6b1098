"""JSON Patch (RFC 6902) over plain JSON values, with JSON Pointers (RFC 6901).

Small enough to own: FHIR's PATCH needs exactly these six operations, applied to a copy so
that a failing operation leaves nothing half-changed.
"""

from __future__ import annotations

import copy
from typing import Any

MAX_OPERATIONS = 200
#: A patch may grow a document to at most twice its size plus this (``copy`` doubles it otherwise).
GROWTH_ALLOWANCE = 64 * 1024


class PatchError(ValueError):
    """The patch is malformed or does not apply to the document."""


def apply_patch(document: Any, operations: Any) -> Any:
    """Return a patched deep copy of ``document``."""
    if not isinstance(operations, list) or not operations:
        raise PatchError("a JSON Patch is a non-empty array of operations")
    if len(operations) > MAX_OPERATIONS:
        raise PatchError(f"at most {MAX_OPERATIONS} operations")
    doc = copy.deepcopy(document)
    budget = 2 * _weight(document) + GROWTH_ALLOWANCE
    for index, op in enumerate(operations):
        if (
            not isinstance(op, dict)
            or not isinstance(op.get("op"), str)
            or not isinstance(op.get("path"), str)
        ):
            raise PatchError(f"operation {index} needs 'op' and 'path' strings")
        try:
            doc = _apply_one(doc, op)
        except PatchError as exc:
            raise PatchError(f"operation {index} ({op['op']} {op['path']}): {exc}") from None
        if op["op"] in ("add", "replace", "copy") and _weight(doc) > budget:
            raise PatchError(f"operation {index} makes the document too large")
    return doc


def _weight(value: Any) -> int:
    """A size measure of a JSON value (nodes plus string lengths), without serialising it."""
    if isinstance(value, dict):
        return 1 + sum(len(k) + _weight(v) for k, v in value.items())
    if isinstance(value, list):
        return 1 + sum(_weight(v) for v in value)
    if isinstance(value, str):
        return 1 + len(value)
    return 1


def _apply_one(doc: Any, op: dict[str, Any]) -> Any:
    name, path = op["op"], _parse(op["path"])
    if name in ("add", "replace", "test") and "value" not in op:
        raise PatchError("'value' is required")
    if name == "add":
        return _add(doc, path, copy.deepcopy(op["value"]))
    if name == "remove":
        return _remove(doc, path)[0]
    if name == "replace":
        _get(doc, path)
        doc, _ = _remove(doc, path)
        return _add(doc, path, copy.deepcopy(op["value"]))
    if name in ("move", "copy"):
        if not isinstance(op.get("from"), str):
            raise PatchError("'from' is required")
        source = _parse(op["from"])
        if name == "move":
            if path[: len(source)] == source and path != source:
                raise PatchError("cannot move a value into itself")
            doc, value = _remove(doc, source)
        else:
            value = copy.deepcopy(_get(doc, source))
        return _add(doc, path, value)
    if name == "test":
        if _get(doc, path) != op["value"]:
            raise PatchError("test failed")
        return doc
    raise PatchError(f"unknown operation '{name}'")


def _parse(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f"'{pointer}' is not a JSON Pointer")
    return [part.replace("~1", "/").replace("~0", "~") for part in pointer[1:].split("/")]


def _index(container: list[Any], token: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit() or (token != "0" and token.startswith("0")):
        raise PatchError(f"'{token}' is not an array index")
    index = int(token)
    if index > len(container) or (index == len(container) and not allow_end):
        raise PatchError(f"index {index} is out of range")
    return index


def _get(doc: Any, path: list[str]) -> Any:
    for token in path:
        if isinstance(doc, dict):
            if token not in doc:
                raise PatchError(f"'{token}' does not exist")
            doc = doc[token]
        elif isinstance(doc, list):
            doc = doc[_index(doc, token, allow_end=False)]
        else:
            raise PatchError(f"cannot descend into a value at '{token}'")
    return doc


def _add(doc: Any, path: list[str], value: Any) -> Any:
    if not path:
        return value
    parent, token = _get(doc, path[:-1]), path[-1]
    if isinstance(parent, dict):
        parent[token] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, token, allow_end=True), value)
    else:
        raise PatchError("the parent is not an object or an array")
    return doc


def _remove(doc: Any, path: list[str]) -> tuple[Any, Any]:
    if not path:
        raise PatchError("cannot remove the whole document")
    parent, token = _get(doc, path[:-1]), path[-1]
    if isinstance(parent, dict):
        if token not in parent:
            raise PatchError(f"'{token}' does not exist")
        return doc, parent.pop(token)
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, token, allow_end=False))
    raise PatchError("the parent is not an object or an array")
