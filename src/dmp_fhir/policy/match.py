"""Judge one stored document against a policy filter in memory, when the document is at hand.

A read fetches the document to learn whose record it is; asking the database again whether
the policy's filter lets it through would cost a second round trip for the same document.
This evaluator covers exactly the operators the policy's filters use, on top-level fields
(``{field: value}``, ``$in``, ``$nin``, ``$or``, ``$and``) with MongoDB's semantics for
arrays and missing fields; for anything else it answers ``None`` and the caller asks the
database. It never answers "visible" for a shape it does not know.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..storage.store import ResourceStore

_SCALARS = (str, bool, int)


async def admits(
    store: ResourceStore, rtype: str, doc: Mapping[str, Any], scope: Mapping[str, Any] | None
) -> bool:
    """Does the policy filter ``scope`` let this stored document (current or history) through?
    Judged in memory when :func:`evaluate` can, else by the database on that one document."""
    if scope is None:
        return False
    if not scope:
        return True
    verdict = evaluate(scope, doc)  # the document is at hand: no second round trip
    if verdict is not None:
        return verdict
    from ..search.engine import merge

    history = "/" in str(doc["_id"])
    query = merge({"_id": doc["_id"]}, scope)
    return bool(await store.find(rtype, query, limit=1, history=history, projection={"_id": 1}))


def evaluate(query: Mapping[str, Any], doc: Mapping[str, Any]) -> bool | None:
    """True/False as MongoDB would match ``doc`` against ``query``; None: not judged here."""
    verdict = True
    for key, condition in query.items():
        if key in ("$or", "$and"):
            if not isinstance(condition, list) or not condition:
                return None
            parts = [evaluate(part, doc) if isinstance(part, Mapping) else None for part in condition]
            if None in parts:
                return None
            ok = any(parts) if key == "$or" else all(parts)
        elif key.startswith("$") or "." in key:
            return None
        else:
            judged = _field(doc.get(key), key in doc, condition)
            if judged is None:
                return None
            ok = judged
        verdict = verdict and ok
    return verdict


def _field(value: Any, present: bool, condition: Any) -> bool | None:
    values = _values(value, present)
    if values is None:
        return None
    if isinstance(condition, _SCALARS):
        return _among(condition, values)
    if not isinstance(condition, Mapping) or len(condition) != 1:
        return None
    ((op, operand),) = condition.items()
    if not isinstance(operand, list) or not all(isinstance(v, _SCALARS) for v in operand):
        return None
    if op == "$in":
        return any(_among(v, values) for v in operand)
    if op == "$nin":
        return not any(_among(v, values) for v in operand)  # a missing field matches $nin
    return None


def _among(wanted: Any, values: list[Any]) -> bool:
    """Equality as BSON has it: ``True`` is not ``1``."""
    return any(type(v) is type(wanted) and v == wanted for v in values)


def _values(value: Any, present: bool) -> list[Any] | None:
    """The values a top-level field offers to an equality (an array offers its elements)."""
    if not present:
        return []
    if isinstance(value, list):
        return value if all(isinstance(v, _SCALARS) for v in value) else None
    if isinstance(value, _SCALARS):
        return [value]
    return None  # null, dates, sub-documents: let the database judge
