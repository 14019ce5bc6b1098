"""Search values extracted at write time into top-level ``_s_*`` fields (``docs/storage.md``).

FerretDB only pushes plain equalities on top-level fields down to SQL and mishandles
``$elemMatch`` and negations on dotted paths, so search never looks inside ``resource``: every
parameter's values are flattened here, once per write, into strings that a query matches by
equality (``"system|code"``, every prefix of a folded name, ``"Patient/123"``…) or into a
``lo``/``hi`` pair of UTC datetimes.

Paths come from ``params.py``; they are compiled once (cached) and walked over plain JSON,
recognising each FHIR datatype by its shape (a Coding has ``code``, an Identifier or ContactPoint
a string ``value``, a CodeableConcept ``coding``/``text``, a Period ``start``/``end``…).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from .dates import DateRange, parse_range, period_range
from .params import SearchParam, params_for
from .references import reference_keys, reference_type
from .text import normalize, prefixes
from .ucum import canonical_value, conversion

Resource = dict[str, Any]

# -- paths ---------------------------------------------------------------------------------------

_STEP = re.compile(
    r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)"  # element name
    r"(?:\((?P<where>[^()]*)\))?"  # (URL) or (key=value)
    r"(?:\[(?P<type>[A-Z][A-Za-z]*)\])?"  # [TargetType]
)


@dataclass(frozen=True, slots=True)
class Step:
    """One element name, optionally filtered by ``(key=value)`` and by reference target type."""

    name: str
    where: tuple[str, str] | None = None
    ref_type: str | None = None


@dataclass(frozen=True, slots=True)
class CompiledPath:
    steps: tuple[Step, ...]
    exists: bool = False  # the path ends in ``.exists()``


def _split(path: str) -> list[str]:
    """Split on the dots that are not inside ``(...)`` or ``[...]`` (extension URLs have dots)."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in path:
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        if char == "." and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


@cache
def compile_path(path: str) -> CompiledPath:
    """Parse the registry's path syntax (see ``params.py``); ValueError when it is malformed."""
    parts = _split(path)
    exists = parts[-1] == "exists()"
    if exists:
        parts = parts[:-1]
    steps: list[Step] = []
    for part in parts:
        match = _STEP.fullmatch(part)
        if match is None:
            raise ValueError(f"bad search path {path!r} at {part!r}")
        where_text = match.group("where")
        where: tuple[str, str] | None = None
        if where_text is not None:
            key, sep, value = where_text.partition("=")
            where = (key, value) if sep else ("url", where_text)
        steps.append(Step(match.group("name"), where, match.group("type")))
    return CompiledPath(tuple(steps), exists)


def _has_type(node: Any, wanted: str, base_url: str | None) -> bool:
    """Whether a Reference targets ``wanted`` (a logical, identifier-only reference is kept)."""
    if not isinstance(node, dict):
        return False
    text = node.get("reference")
    found = reference_type(text, base_url) if isinstance(text, str) else None
    if found is None:
        declared = node.get("type")
        if isinstance(declared, str):
            found = declared
        elif text is None:
            return "identifier" in node
    return found == wanted


def walk(resource: dict[str, Any], path: CompiledPath, base_url: str | None) -> list[Any]:
    """Every value at ``path`` (arrays flattened, filters applied)."""
    nodes: list[Any] = [resource]
    for step in path.steps:
        found: list[Any] = []
        for node in nodes:
            if isinstance(node, dict):
                value = node.get(step.name)
                if isinstance(value, list):
                    found.extend(value)
                elif value is not None:
                    found.append(value)
        if step.where is not None:
            key, wanted = step.where
            found = [n for n in found if isinstance(n, dict) and n.get(key) == wanted]
        if step.ref_type is not None:
            found = [n for n in found if _has_type(n, step.ref_type, base_url)]
        if not found:
            return []
        nodes = found
    return nodes


# -- per-type accumulators -----------------------------------------------------------------------


def code_forms(system: str | None, code: str) -> list[str]:
    """Stored token forms: ``system|code``, ``code``, ``system|`` (``|code``, ``code`` without)."""
    if system:
        return [f"{system}|{code}", code, f"{system}|"]
    return [f"|{code}", code]


@dataclass(slots=True)
class _Tokens:
    codes: dict[str, None] = field(default_factory=dict)
    texts: dict[str, None] = field(default_factory=dict)
    of_type: dict[str, None] = field(default_factory=dict)

    def code(self, system: Any, code: Any) -> None:
        if isinstance(code, str) and code:
            forms = code_forms(system if isinstance(system, str) else None, code)
            self.codes.update(dict.fromkeys(forms))

    def text(self, text: Any) -> None:
        if isinstance(text, str):
            folded = normalize(text)
            if folded:
                self.texts[folded] = None

    def add(self, value: Any) -> None:
        """One token-ish value: code/boolean primitive, Coding, CodeableConcept, Identifier,
        ContactPoint (indexed like an Identifier: ``system|value``)."""
        if isinstance(value, bool):
            self.code(None, "true" if value else "false")
        elif isinstance(value, str):
            self.code(None, value)
        elif isinstance(value, dict):
            if "code" in value:  # Coding (also Quantity: system|code)
                self.code(value.get("system"), value.get("code"))
                self.text(value.get("display"))
            elif isinstance(value.get("value"), str):  # Identifier, ContactPoint
                self._identifier(value)
            else:  # CodeableConcept
                for coding in _as_list(value.get("coding")):
                    if isinstance(coding, dict):
                        self.add(coding)
                self.text(value.get("text"))

    def _identifier(self, ident: dict[str, Any]) -> None:
        number = ident["value"]
        self.code(ident.get("system"), number)
        id_type = ident.get("type")
        if isinstance(id_type, dict):
            self.text(id_type.get("text"))
            for coding in _as_list(id_type.get("coding")):
                if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                    system = coding.get("system")
                    system = system if isinstance(system, str) else ""
                    self.of_type[f"{system}|{coding['code']}|{number}"] = None
                    self.text(coding.get("display"))

    def write(self, out: dict[str, Any], name: str) -> None:
        _put(out, name, self.codes)
        _put(out, name + "_text", self.texts)
        _put(out, name + "_oftype", self.of_type)


_STRING_PARTS = ("family", "given", "prefix", "suffix", "line", "city", "district", "state",
                 "postalCode", "country", "text")  # fmt: skip


def _string_values(value: Any) -> Iterable[str]:
    """The text of a string, or of every part of a HumanName / Address."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key in _STRING_PARTS:
            for part in _as_list(value.get(key)):
                if isinstance(part, str):
                    yield part


def _date_range(value: Any) -> DateRange | None:
    if isinstance(value, str):
        return parse_range(value)
    if isinstance(value, dict):
        return period_range(value)
    return None


# -- extraction ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Plan:
    param: SearchParam
    field: str
    paths: tuple[CompiledPath, ...]


@cache
def _plans(resource_type: str) -> tuple[_Plan, ...]:
    """The compiled paths of every extracted parameter of a type (``_id``/``_lastUpdated`` are
    the storage layer's own ``_id``/``_lu``)."""
    return tuple(
        _Plan(param, param.field, tuple(compile_path(p) for p in param.paths))
        for param in params_for(resource_type).values()
        if param.field.startswith("_s_")
        and param.type in ("token", "string", "date", "reference", "number", "uri", "quantity")
    )


def extract_search_fields(
    resource_type: str, resource: dict[str, Any], *, base_url: str | None = None
) -> dict[str, Any]:
    """Every ``_s_*`` field of ``resource`` (only non-empty ones), as documented in storage.md."""
    out: dict[str, Any] = {}
    for plan in _plans(resource_type):
        kind = plan.param.type
        if kind == "token":
            _extract_token(out, plan, resource, base_url)
        elif kind == "string":
            _extract_string(out, plan, resource, base_url)
        elif kind == "date":
            _extract_date(out, plan, resource, base_url)
        elif kind == "reference":
            _extract_reference(out, plan, resource, base_url)
        elif kind == "number":
            numbers = [v for p in plan.paths for v in walk(resource, p, base_url)
                       if isinstance(v, int | float) and not isinstance(v, bool)]  # fmt: skip
            _put(out, plan.field, dict.fromkeys(numbers))
        elif kind == "quantity":
            _extract_quantity(out, plan, resource, base_url)
        else:  # uri
            uris = [v for p in plan.paths for v in walk(resource, p, base_url)
                    if isinstance(v, str)]  # fmt: skip
            _put(out, plan.field, dict.fromkeys(uris))
    return out


def _extract_token(out: dict[str, Any], plan: _Plan, resource: Resource, base: str | None) -> None:
    tokens = _Tokens()
    has_exists = False
    for path in plan.paths:
        values = walk(resource, path, base)
        if path.exists:
            has_exists = True
            if values:
                tokens.add(True)
            continue
        for value in values:
            tokens.add(value)
    if has_exists and not tokens.codes:
        tokens.add(False)
    tokens.write(out, plan.field)


def _extract_string(out: dict[str, Any], plan: _Plan, resource: Resource, base: str | None) -> None:
    exact: dict[str, None] = {}
    folded: dict[str, None] = {}
    starts: dict[str, None] = {}
    for path in plan.paths:
        for value in walk(resource, path, base):
            for text in _string_values(value):
                norm = normalize(text)
                if not norm:
                    continue
                exact[text] = None
                if norm not in folded:
                    folded[norm] = None
                    starts.update(dict.fromkeys(prefixes(norm)))
    _put(out, plan.field, starts)
    _put(out, plan.field + "_exact", exact)
    _put(out, plan.field + "_norm", folded)


def _extract_date(out: dict[str, Any], plan: _Plan, resource: Resource, base: str | None) -> None:
    lo: datetime | None = None
    hi: datetime | None = None
    for path in plan.paths:
        for value in walk(resource, path, base):
            found = _date_range(value)
            if found is not None:
                lo = found[0] if lo is None else min(lo, found[0])
                hi = found[1] if hi is None else max(hi, found[1])
    if lo is not None and hi is not None:
        out[plan.field + "_lo"] = lo
        out[plan.field + "_hi"] = hi


def _extract_reference(out: Resource, plan: _Plan, resource: Resource, base: str | None) -> None:
    keys: dict[str, None] = {}
    identifiers = _Tokens()
    for path in plan.paths:
        for value in walk(resource, path, base):
            if isinstance(value, str):  # canonical / uri used as a reference
                keys.update(dict.fromkeys(reference_keys(value, base)))
            elif isinstance(value, dict):
                text = value.get("reference")
                if isinstance(text, str):
                    keys.update(dict.fromkeys(reference_keys(text, base)))
                ident = value.get("identifier")
                if isinstance(ident, dict) and isinstance(ident.get("value"), str):
                    identifiers.code(ident.get("system"), ident["value"])
    _put(out, plan.field, keys)
    _put(out, plan.field + "_identifier", identifiers.codes)


def _extract_quantity(out: Resource, plan: _Plan, resource: Resource, base: str | None) -> None:
    """A Quantity: its number in ``_s_x``, its unit in ``_s_x_unit`` (``system|code``, ``code``
    and the human ``unit``), matched beside the number (one value per resource in practice:
    ``Observation.valueQuantity``). A UCUM unit of ``search/ucum.py``'s set also gives the value
    in its dimension's canonical unit: ``_s_x_canon`` and ``_s_x_canon_unit``."""
    numbers: dict[Any, None] = {}
    units: dict[str, None] = {}
    canon: dict[Any, None] = {}
    canon_units: dict[str, None] = {}
    for path in plan.paths:
        for value in walk(resource, path, base):
            if not isinstance(value, dict):
                continue
            number = value.get("value")
            if not isinstance(number, int | float) or isinstance(number, bool):
                continue
            numbers[number] = None
            system, code, unit = value.get("system"), value.get("code"), value.get("unit")
            if isinstance(code, str) and code:
                units[code] = None
                if isinstance(system, str) and system:
                    units[f"{system}|{code}"] = None
            if isinstance(unit, str) and unit:
                units[unit] = None
            converted = conversion(system, code)
            if converted is not None:
                value_in_canonical = canonical_value(number, converted[1])
                if value_in_canonical is not None:
                    canon[value_in_canonical] = None
                    canon_units[converted[0]] = None
    _put(out, plan.field, numbers)
    _put(out, plan.field + "_unit", units)
    _put(out, plan.field + "_canon", canon)
    _put(out, plan.field + "_canon_unit", canon_units)


def _put(out: dict[str, Any], name: str, values: dict[Any, None]) -> None:
    if values:
        out[name] = list(values)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
