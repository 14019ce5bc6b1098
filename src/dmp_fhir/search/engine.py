"""FHIR search on the store: criteria → one MongoDB filter, then paging, totals and includes.

Every query the engine sends (matches, counts, chain and ``_has`` look-ups, includes) is
combined with the caller's ``scope`` filter, so the access policy is inside the query and
paging and totals only ever see what the caller may see.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import BadRequest, Issue
from ..registry import RESOURCE_TYPES
from ..storage.store import ResourceStore
from .cursor import Cursor
from .filters import SearchValueError, build_or_filter
from .params import SearchParam, get_param, params_for
from .params import field_name as field_name_of
from .shaping import parse_elements, parse_summary

#: A scope maps a resource type to the extra filter the caller is bound to (None: sees nothing).
Scope = Callable[[str], Mapping[str, Any] | None]

CONTROL_PARAMS = frozenset(
    {
        "_count",
        "_sort",
        "_total",
        "_summary",
        "_elements",
        "_include",
        "_revinclude",
        "_cursor",
        "_format",
        "_pretty",
    }
)
MAX_CHAIN_DEPTH = 4
MAX_CHAIN_MATCHES = 1000
MAX_INCLUDES = 1000
MAX_CRITERIA = 100
DEFAULT_SORT: list[tuple[str, int]] = [("_lu", -1), ("_id", -1)]
_NOTHING: dict[str, Any] = {"_id": {"$in": []}}
_SPLIT = re.compile(r"(?<!\\),")


def no_scope(_rtype: str) -> Mapping[str, Any]:
    return {}


def merge(*conditions: Mapping[str, Any] | None) -> dict[str, Any]:
    """AND several filters, keeping plain field conditions at the top level (pushdown)."""
    out: dict[str, Any] = {}
    extra: list[dict[str, Any]] = []
    for cond in conditions:
        if not cond:
            continue
        for key, value in cond.items():
            if key == "$and":
                extra.extend(value)
            elif key.startswith("$") or key in out:
                extra.append({key: value})
            else:
                out[key] = value
    if extra:
        out["$and"] = extra
    return out


def eq_or_in(values: list[str]) -> Any:
    """One value as a plain equality (FerretDB pushes it down to SQL), several as ``$in``."""
    return values[0] if len(values) == 1 else {"$in": values}


def reject_nul(params: list[tuple[str, str]]) -> None:
    """FHIR strings cannot hold NUL, and the database refuses them: a clear 400, early."""
    for key, raw in params:
        if "\x00" in key or "\x00" in raw:
            raise BadRequest("Search parameters may not contain NUL characters.", code="value")


def split_values(raw: str) -> list[str]:
    """The OR-list of a parameter value; escapes (``\\,`` ``\\|`` ``\\$``) are left for the filters."""
    return _SPLIT.split(raw)


@dataclass(frozen=True, slots=True)
class Include:
    source: str
    param: str
    target: str | None
    iterate: bool = False


@dataclass
class SearchRequest:
    """A compiled search: the filter and how to page and shape the answer."""

    rtype: str
    filter: dict[str, Any]
    sort: list[tuple[str, int]]
    keyset: bool
    count: int
    cursor: Cursor | None
    total: str  # none | accurate | estimate
    summary: str | None
    elements: list[str] | None
    includes: list[Include] = field(default_factory=list)
    revincludes: list[Include] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)


@dataclass
class SearchResult:
    matches: list[dict[str, Any]]
    included: list[tuple[str, dict[str, Any]]]
    total: int | None
    next_cursor: Cursor | None
    previous_cursor: Cursor | None


class SearchEngine:
    """Compiles and runs searches for one caller (``scope``) on the raw store."""

    def __init__(
        self,
        store: ResourceStore,
        *,
        base_url: str,
        scope: Scope = no_scope,
        default_count: int = 20,
        max_count: int = 1000,
    ) -> None:
        self.store = store
        self.base_url = base_url.rstrip("/")
        self.scope = scope
        self.default_count = default_count
        self.max_count = max_count

    # -- compiling ----------------------------------------------------------------------

    def base_filter(self, rtype: str) -> dict[str, Any]:
        """Live resources the caller may see."""
        scope = self.scope(rtype)
        if scope is None:
            return dict(_NOTHING)
        return merge({"_deleted": False}, scope)

    async def compile(
        self, rtype: str, params: list[tuple[str, str]], *, strict: bool = False
    ) -> SearchRequest:
        criteria = [(k, v) for k, v in params if k not in CONTROL_PARAMS]
        if len(criteria) > MAX_CRITERIA:
            raise BadRequest(f"Too many search parameters (at most {MAX_CRITERIA}).", code="too-costly")
        controls = {k: v for k, v in params if k in CONTROL_PARAMS}
        warnings: list[Issue] = []
        conditions: list[Mapping[str, Any]] = [self.base_filter(rtype)]
        reject_nul(params)
        for key, raw in criteria:
            try:
                cond = await self.criterion(rtype, key, raw, depth=0)
            except UnknownParameter as exc:
                if strict:
                    raise BadRequest(str(exc), code="not-supported") from None
                warnings.append(Issue("not-supported", f"{exc} It was ignored.", severity="warning"))
                continue
            conditions.append(cond)
        count_raw = controls.get("_count")
        count = self.default_count
        summary = parse_summary(controls.get("_summary"))
        if count_raw is not None:
            if not count_raw.isdigit():
                raise BadRequest(f"_count must be a non-negative integer, not '{count_raw}'.", code="value")
            count = min(int(count_raw), self.max_count)
            if count == 0:
                summary = "count"
        total = controls.get("_total", "none")
        if total not in ("none", "accurate", "estimate"):
            raise BadRequest("_total must be none, accurate or estimate.", code="value")
        sort, keyset = self._sort(rtype, controls.get("_sort"))
        cursor = Cursor.decode(controls["_cursor"]) if "_cursor" in controls else None
        if cursor is not None and (cursor.key is not None) != keyset:
            raise BadRequest("The paging cursor does not match this search.", code="value")
        return SearchRequest(
            rtype=rtype,
            filter=merge(*conditions),
            sort=sort,
            keyset=keyset,
            count=max(count, 1),
            cursor=cursor,
            total=total,
            summary=summary,
            elements=parse_elements(controls.get("_elements")),
            includes=self._includes(rtype, params, "_include"),
            revincludes=self._includes(rtype, params, "_revinclude"),
            warnings=warnings,
        )

    async def criterion(self, rtype: str, key: str, raw: str, *, depth: int) -> Mapping[str, Any]:
        """The filter for one ``key=value`` pair of the query (chains and ``_has`` included)."""
        if depth > MAX_CHAIN_DEPTH or key.count(".") > MAX_CHAIN_DEPTH:
            raise BadRequest(f"Chains deeper than {MAX_CHAIN_DEPTH} are not supported.", code="too-costly")
        if key.startswith("_has:"):
            return await self._has(rtype, key, raw, depth)
        head, dot, rest = key.partition(".")
        name, _, modifier = head.partition(":")
        if name == "_id" and not dot:
            return self._id_filter(modifier, raw)
        param = get_param(rtype, name)
        if param is None:
            raise UnknownParameter(f"Unknown search parameter '{name}' for {rtype}.")
        if dot:
            return await self._chain(param, modifier or None, rest, raw, depth)
        try:
            return build_or_filter(param, modifier or None, split_values(raw), base_url=self.base_url)
        except SearchValueError as exc:
            raise BadRequest(f"{key}: {exc}", code="value") from None

    @staticmethod
    def _id_filter(modifier: str, raw: str) -> Mapping[str, Any]:
        values = split_values(raw)
        if modifier == "not":
            return {"_id": {"$nin": values}}
        if modifier:
            raise BadRequest(f"_id does not support the ':{modifier}' modifier.", code="value")
        return {"_id": eq_or_in(values)}

    async def _chain(
        self, param: SearchParam, type_modifier: str | None, rest: str, raw: str, depth: int
    ) -> Mapping[str, Any]:
        if param.type != "reference":
            raise BadRequest(f"'{param.name}' is not a reference: it cannot be chained.", code="value")
        targets = [t for t in param.targets if t in RESOURCE_TYPES] or [t for t in RESOURCE_TYPES]
        if type_modifier:
            if type_modifier not in RESOURCE_TYPES:
                raise BadRequest(f"Unknown resource type '{type_modifier}' in chain.", code="value")
            targets = [type_modifier]
        if len(targets) > 1:
            # Only the target types that define the chained parameter can match.
            targets = [
                t for t in targets if get_param(t, rest.split(".")[0].split(":")[0]) or rest.startswith("_id")
            ]
            if not targets:
                raise UnknownParameter(
                    f"No target type of '{param.name}' has a search parameter '{rest.split('.')[0]}'."
                )
        references: list[str] = []
        for target in targets:
            cond = await self.criterion(target, rest, raw, depth=depth + 1)
            docs = await self.store.find(
                target,
                merge(self.base_filter(target), cond),
                projection={"_id": 1},
                limit=MAX_CHAIN_MATCHES + 1,
            )
            if len(docs) > MAX_CHAIN_MATCHES:
                raise BadRequest(
                    f"The chained search on {target} matches too many resources; narrow it.",
                    code="too-costly",
                )
            references += [f"{target}/{d['_id']}" for d in docs]
        field_name = param.field
        if not references:
            return dict(_NOTHING)
        return {field_name: eq_or_in(references)}

    async def _has(self, rtype: str, key: str, raw: str, depth: int) -> Mapping[str, Any]:
        parts = key.split(":", 3)
        if len(parts) != 4 or not all(parts[1:]):
            raise BadRequest("_has must be written _has:Type:reference:parameter.", code="value")
        _, other, ref_name, inner = parts
        if other not in RESOURCE_TYPES:
            raise BadRequest(f"Unknown resource type '{other}' in _has.", code="value")
        ref = get_param(other, ref_name)
        if ref is None or ref.type != "reference":
            raise BadRequest(f"'{ref_name}' is not a reference parameter of {other}.", code="value")
        cond = await self.criterion(other, inner, raw, depth=depth + 1)
        field_name = ref.field
        docs = await self.store.find(
            other,
            merge(self.base_filter(other), cond),
            projection={field_name: 1},
            limit=MAX_CHAIN_MATCHES + 1,
        )
        if len(docs) > MAX_CHAIN_MATCHES:
            raise BadRequest("The _has search matches too many resources; narrow it.", code="too-costly")
        prefix = f"{rtype}/"
        ids = sorted(
            {
                value[len(prefix) :]
                for doc in docs
                for value in _as_list(doc.get(field_name))
                if isinstance(value, str) and value.startswith(prefix)
            }
        )
        if not ids:
            return dict(_NOTHING)
        return {"_id": eq_or_in(ids)}

    def _sort(self, rtype: str, raw: str | None) -> tuple[list[tuple[str, int]], bool]:
        """Sort keys; keyset paging when they are only ``_lastUpdated``/``_id``."""
        if not raw:
            return list(DEFAULT_SORT), True
        keys: list[tuple[str, int]] = []
        for item in raw.split(","):
            item = item.strip()
            direction = -1 if item.startswith("-") else 1
            name = item.lstrip("-")
            if name == "_id":
                keys.append(("_id", direction))
                continue
            if name == "_lastUpdated":
                keys.append(("_lu", direction))
                continue
            param = get_param(rtype, name)
            if param is None:
                raise BadRequest(f"Unknown sort parameter '{name}' for {rtype}.", code="not-supported")
            base = param.field
            if param.type == "date":
                keys.append((f"{base}_lo" if direction > 0 else f"{base}_hi", direction))
            elif param.type == "string":
                keys.append((f"{base}_norm", direction))
            elif param.type in ("token", "reference", "uri", "number", "quantity"):
                keys.append((base, direction))
            else:
                raise BadRequest(f"Cannot sort on '{name}'.", code="not-supported")
        keyset = keys in ([("_lu", -1)], [("_lu", 1)])
        if keyset:
            return [*keys, ("_id", keys[0][1])], True
        if not any(k == "_id" for k, _ in keys):
            keys.append(("_id", 1))
        return keys, False

    def _includes(self, rtype: str, params: list[tuple[str, str]], kind: str) -> list[Include]:
        specs: list[Include] = []
        for key, value in params:
            name, _, modifier = key.partition(":")
            if name != kind:
                continue
            if modifier not in ("", "iterate", "recurse"):
                raise BadRequest(f"Unknown modifier ':{modifier}' on {kind}.", code="value")
            iterate = modifier in ("iterate", "recurse")
            for item in split_values(value):
                if item == "*":
                    if kind == "_revinclude":
                        raise BadRequest("_revinclude=* is not supported.", code="not-supported")
                    specs += [
                        Include(rtype, p.name, None, iterate)
                        for p in params_for(rtype).values()
                        if p.type == "reference"
                    ]
                    continue
                parts = item.split(":")
                if len(parts) not in (2, 3) or parts[0] not in RESOURCE_TYPES:
                    raise BadRequest(
                        f"{kind} must be Type:parameter[:targetType], not '{item}'.", code="value"
                    )
                param = get_param(parts[0], parts[1])
                if param is None or param.type != "reference":
                    raise BadRequest(
                        f"'{parts[1]}' is not a reference parameter of {parts[0]}.", code="value"
                    )
                target = parts[2] if len(parts) == 3 else None
                if target is not None and target not in RESOURCE_TYPES:
                    raise BadRequest(f"Unknown target type '{target}' in {kind}.", code="value")
                specs.append(Include(parts[0], param.name, target, iterate))
        return specs

    # -- running ------------------------------------------------------------------------

    async def count(self, rtype: str, query: Mapping[str, Any]) -> int:
        return await self.store.count(rtype, query)

    async def execute(self, req: SearchRequest) -> SearchResult:
        total: int | None = None
        if req.summary == "count" or req.total in ("accurate", "estimate"):
            total = await self.store.count(req.rtype, req.filter)
        if req.summary == "count":
            return SearchResult([], [], total, None, None)
        matches, next_cursor, previous_cursor = await self._page(req)
        if total is None and req.cursor is None and next_cursor is None:
            total = len(matches)
        included = await self._fetch_includes(req, matches)
        return SearchResult(matches, included, total, next_cursor, previous_cursor)

    async def _page(self, req: SearchRequest) -> tuple[list[dict[str, Any]], Cursor | None, Cursor | None]:
        cursor = req.cursor
        if not req.keyset:
            offset = cursor.offset or 0 if cursor else 0
            docs = await self.store.find(
                req.rtype, req.filter, sort=req.sort, skip=offset, limit=req.count + 1
            )
            nxt = Cursor(offset=offset + req.count) if len(docs) > req.count else None
            prev = Cursor(offset=max(0, offset - req.count)) if offset > 0 else None
            return docs[: req.count], nxt, prev
        direction = req.sort[0][1]
        if cursor is None or cursor.key is None:
            docs = await self.store.find(req.rtype, req.filter, sort=req.sort, limit=req.count + 1)
            page = docs[: req.count]
            nxt = _key_cursor(page[-1], True) if len(docs) > req.count else None
            return page, nxt, None
        moment, rid = cursor.key
        # Forward in the sort order means "after the key" in the direction of the sort.
        after = cursor.forward
        op = "$lt" if (direction < 0) == after else "$gt"
        keyset = {"$or": [{"_lu": {op: moment}}, {"_lu": moment, "_id": {op: rid}}]}
        sort = req.sort if after else [(k, -d) for k, d in req.sort]
        docs = await self.store.find(req.rtype, merge(req.filter, keyset), sort=sort, limit=req.count + 1)
        more = len(docs) > req.count
        page = docs[: req.count]
        if after:
            nxt = _key_cursor(page[-1], True) if more and page else None
            prev = _key_cursor(page[0], False) if page else None
            return page, nxt, prev
        page.reverse()
        prev = _key_cursor(page[0], False) if more and page else None
        nxt = _key_cursor(page[-1], True) if page else None
        return page, nxt, prev

    async def _fetch_includes(
        self, req: SearchRequest, matches: list[dict[str, Any]]
    ) -> list[tuple[str, dict[str, Any]]]:
        if not matches or not (req.includes or req.revincludes):
            return []
        seen = {(req.rtype, d["_id"]) for d in matches}
        included: list[tuple[str, dict[str, Any]]] = []
        frontier: list[tuple[str, dict[str, Any]]] = [(req.rtype, d) for d in matches]
        for level in range(2):
            found: list[tuple[str, dict[str, Any]]] = []
            for spec in req.includes:
                if level and not spec.iterate:
                    continue
                found += await self._include(spec, frontier, seen)
            for spec in req.revincludes:
                if level and not spec.iterate:
                    continue
                found += await self._revinclude(spec, frontier, seen)
            included += found
            if len(included) > MAX_INCLUDES:
                raise BadRequest(
                    f"The search includes more than {MAX_INCLUDES} resources; lower _count.",
                    code="too-costly",
                )
            frontier = found
            if not frontier:
                break
        return included

    async def _include(
        self, spec: Include, sources: list[tuple[str, dict[str, Any]]], seen: set[tuple[str, str]]
    ) -> list[tuple[str, dict[str, Any]]]:
        field_name = field_name_of(spec.param)
        wanted: list[tuple[str, str]] = []
        for rtype, doc in sources:
            if rtype != spec.source:
                continue
            for value in _as_list(doc.get(field_name)):
                if not isinstance(value, str) or value.count("/") != 1:
                    continue
                target, rid = value.split("/")
                if target not in RESOURCE_TYPES or (spec.target and target != spec.target):
                    continue
                if (target, rid) not in seen:
                    seen.add((target, rid))
                    wanted.append((target, rid))
        out: list[tuple[str, dict[str, Any]]] = []
        for target, rid in wanted:
            hit = await self.store.read_doc(target, merge({"_id": rid}, self.base_filter(target)))
            if hit is not None:
                out.append((target, hit))
        return out

    async def _revinclude(
        self, spec: Include, sources: list[tuple[str, dict[str, Any]]], seen: set[tuple[str, str]]
    ) -> list[tuple[str, dict[str, Any]]]:
        field_name = field_name_of(spec.param)
        param = get_param(spec.source, spec.param)
        refs = [
            f"{rtype}/{doc['_id']}"
            for rtype, doc in sources
            if param is not None
            and (not param.targets or rtype in param.targets)
            and (spec.target is None or spec.target == rtype)
        ]
        if not refs:
            return []
        cond = {field_name: eq_or_in(refs)}
        docs = await self.store.find(
            spec.source, merge(cond, self.base_filter(spec.source)), limit=MAX_INCLUDES + 1
        )
        out: list[tuple[str, dict[str, Any]]] = []
        for doc in docs:
            if (spec.source, doc["_id"]) not in seen:
                seen.add((spec.source, doc["_id"]))
                out.append((spec.source, doc))
        return out


class UnknownParameter(Exception):
    """A search parameter this server does not support for the type."""


def _key_cursor(doc: Mapping[str, Any], forward: bool) -> Cursor:
    return Cursor(key=(doc["_lu"], doc["_id"]), forward=forward)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
