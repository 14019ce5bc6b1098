"""One search parameter value → one MongoDB condition on top-level ``_s_*`` fields.

The shapes are chosen for FerretDB (``docs/storage.md``, ``../shared/docs/mongodb.md``): plain
equality on a top-level field wherever FHIR semantics allow it (pushed down to SQL there,
index-backed on MongoDB), ranges on the ``_lo``/``_hi`` datetimes, ``$nin`` only on top-level
fields, regexes only as ``bson.regex.Regex`` (no Python ``re`` flags, which FerretDB rejects) built
from escaped text. User input is only ever a *value* in these documents (``{"$gt": ""}`` or
``$where`` stay strings) and field names come from the registry, never from the query.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from bson.regex import Regex

from .dates import DATETIME_MAX, DATETIME_MIN, DateRange, parse_range
from .params import SearchParam
from .references import local_reference, reference_keys
from .text import MAX_PREFIX, normalize, regex_escape
from .ucum import conversion

Filter = dict[str, Any]

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_PREFIXED = re.compile(r"(?P<prefix>[a-z]{2})(?P<rest>[0-9+\-.].*)", re.S)
_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_MODIFIERS: dict[str, tuple[str, ...]] = {
    "token": ("not", "text", "of-type"),
    "string": ("exact", "contains"),
    "date": (),
    "reference": ("identifier",),  # plus a resource type (``subject:Patient``)
    "number": (),
    "quantity": (),
    "uri": ("below",),
}


class SearchValueError(ValueError):
    """A search value or modifier this parameter cannot take (answered as HTTP 400)."""


def build_or_filter(
    param: SearchParam,
    modifier: str | None,
    values: list[str],
    *,
    base_url: str | None = None,
    now: datetime | None = None,
) -> Filter:
    """The condition for a comma-separated OR list (already split, escapes still in place).

    One value gives its own condition; equalities on one field merge into ``$in``; ``:not`` with
    several values excludes them all (``$nin``: none of them); anything else becomes ``$or``.
    """
    if not values:
        raise SearchValueError(f"Parameter '{param.name}' has no value.")
    if len(values) == 1:
        return build_param_filter(param, modifier, values[0], base_url=base_url, now=now)
    if param.type == "token" and modifier == "not":
        return {param.field: {"$nin": list(dict.fromkeys(_token_key(param, v) for v in values))}}
    parts = [build_param_filter(param, modifier, v, base_url=base_url, now=now) for v in values]
    fields = {next(iter(p)) for p in parts if len(p) == 1}
    if len(fields) == 1 and all(len(p) == 1 and _is_plain(next(iter(p.values()))) for p in parts):
        (name,) = fields
        return {name: {"$in": list(dict.fromkeys(p[name] for p in parts))}}
    return {"$or": parts}


def build_param_filter(
    param: SearchParam,
    modifier: str | None,
    value: str,
    *,
    base_url: str | None = None,
    now: datetime | None = None,
) -> Filter:
    """The condition for one value of ``param`` (one item of an OR list), with its modifier.

    ``base_url`` makes absolute references to this server relative, as extraction does; ``now`` is
    the reference instant of the ``ap`` date prefix (default: the current time).
    """
    if modifier == "missing":
        return _missing(param, value)
    kind = param.type
    allowed = _MODIFIERS.get(kind)
    if allowed is None:
        raise SearchValueError(f"Search on {kind} parameter '{param.name}' is not supported.")
    if (
        modifier is not None
        and modifier not in allowed
        and not (kind == "reference" and _RESOURCE_TYPE.fullmatch(modifier))
    ):
        raise SearchValueError(f"Modifier ':{modifier}' is not supported on {kind} parameter "
                               f"'{param.name}'.")  # fmt: skip
    if value == "":
        raise SearchValueError(f"Parameter '{param.name}' has an empty value.")
    if kind == "token":
        return _token(param, modifier, value)
    if kind == "string":
        return _string(param, modifier, value)
    if kind == "date":
        return _date(param, value, now)
    if kind == "reference":
        return _reference(param, modifier, value, base_url)
    if kind == "number":
        return _number(param, value)
    if kind == "quantity":
        return _quantity(param, value)
    text = unescape(value)
    if modifier == "below":
        return {param.field: Regex("^" + regex_escape(text))}
    return {param.field: text}


# -- escapes -------------------------------------------------------------------------------------


def unescape(value: str) -> str:
    """Undo FHIR search escapes: ``\\,`` ``\\$`` ``\\|`` ``\\\\``."""
    return re.sub(r"\\([,$|\\])", r"\1", value)


def split_pipes(value: str) -> list[str]:
    """Split on the ``|`` that are not escaped, then unescape each part."""
    parts = re.split(r"(?<!\\)((?:\\\\)*)\|", value)
    # re.split keeps the captured even runs of backslashes: glue them back to their part
    out: list[str] = [parts[0]]
    for i in range(1, len(parts), 2):
        out[-1] += parts[i]
        out.append(parts[i + 1])
    return [unescape(p) for p in out]


# -- per type ------------------------------------------------------------------------------------


def _missing(param: SearchParam, value: str) -> Filter:
    if value not in ("true", "false"):
        raise SearchValueError(f"':missing' takes true or false, not '{value}' ('{param.name}').")
    fields = _presence_fields(param)
    if value == "true":
        return {f: {"$exists": False} for f in fields}
    if len(fields) == 1:
        return {fields[0]: {"$exists": True}}
    return {"$or": [{f: {"$exists": True}} for f in fields]}


def _presence_fields(param: SearchParam) -> list[str]:
    """The fields whose presence means the element is there (a CodeableConcept may have only a
    text, a Reference only an identifier)."""
    f = param.field
    if param.type == "token":
        return [f] if f == "_id" else [f, f + "_text"]
    if param.type == "reference":
        return [f, f + "_identifier"]
    if param.type == "date":
        return [date_fields(param)[0]]
    return [f]


def _token_key(param: SearchParam, value: str) -> str:
    """The stored form a token query value must equal."""
    if param.field == "_id":
        return unescape(value)
    parts = split_pipes(value)
    if len(parts) == 1:
        return parts[0]
    if len(parts) != 2 or parts == ["", ""]:
        raise SearchValueError(f"Token '{value}' of '{param.name}' must be code, system|code, "
                               "|code or system|.")  # fmt: skip
    system, code = parts
    return f"{system}|{code}"


def _token(param: SearchParam, modifier: str | None, value: str) -> Filter:
    if modifier == "text":
        if param.field == "_id":
            raise SearchValueError("':text' is not supported on '_id'.")
        folded = normalize(unescape(value))
        if not folded:
            raise SearchValueError(f"Parameter '{param.name}:text' has an empty value.")
        return {param.field + "_text": Regex("^" + regex_escape(folded))}
    if modifier == "of-type":
        parts = split_pipes(value)
        if len(parts) != 3 or not parts[1] or not parts[2]:
            raise SearchValueError(f"':of-type' takes system|code|value, not '{value}'.")
        return {param.field + "_oftype": "|".join(parts)}
    key = _token_key(param, value)
    if modifier == "not":
        return {param.field: {"$nin": [key]}}
    return {param.field: key}


def _string(param: SearchParam, modifier: str | None, value: str) -> Filter:
    text = unescape(value)
    if modifier == "exact":
        return {param.field + "_exact": text}
    folded = normalize(text)
    if not folded:
        raise SearchValueError(f"Parameter '{param.name}' has an empty value.")
    if modifier == "contains":
        return {param.field + "_norm": Regex(regex_escape(folded))}
    if len(folded) <= MAX_PREFIX:
        return {param.field: folded}
    # longer than any stored prefix: the 64-character prefix leads, a regex checks the rest
    return {
        param.field: folded[:MAX_PREFIX],
        param.field + "_norm": Regex("^" + regex_escape(folded)),
    }


def _reference(param: SearchParam, modifier: str | None, value: str, base_url: str | None) -> Filter:
    if modifier == "identifier":
        return {param.field + "_identifier": _token_key(param, value)}
    text = unescape(value).strip()
    if modifier is not None:  # a resource type: ``subject:Patient=123``
        _check_target(param, modifier)
        local = local_reference(text, base_url)
        if local is not None:
            if local[0] != modifier:
                raise SearchValueError(f"'{value}' is not a {modifier} reference ('{param.name}').")
            text = local[1]
        if not _ID.fullmatch(text):
            raise SearchValueError(f"':{modifier}' takes an id, not '{value}' ('{param.name}').")
        return {param.field: f"{modifier}/{text}"}
    if "/" not in text and ":" not in text:  # a bare id
        if not _ID.fullmatch(text):
            raise SearchValueError(f"'{value}' is not a resource id ('{param.name}').")
        if len(param.targets) == 1:
            return {param.field: f"{param.targets[0]}/{text}"}
        return {param.field: text}
    keys = reference_keys(text, base_url)
    if not keys:
        raise SearchValueError(f"'{value}' cannot be searched as a reference ('{param.name}').")
    local = local_reference(text, base_url)
    if local is not None:
        _check_target(param, local[0])
    return {param.field: keys[0]}


def _check_target(param: SearchParam, rtype: str) -> None:
    if param.targets and rtype not in param.targets:
        targets = ", ".join(param.targets)
        raise SearchValueError(f"'{param.name}' references {targets}, not {rtype}.")


def _split_prefix(param: SearchParam, value: str) -> tuple[str, str]:
    match = _PREFIXED.fullmatch(value)
    if match is None:
        return "eq", value
    if match.group("prefix") not in PREFIXES:
        raise SearchValueError(f"Unknown prefix '{match.group('prefix')}' in '{value}' "
                               f"('{param.name}'); use one of {', '.join(PREFIXES)}.")  # fmt: skip
    return match.group("prefix"), match.group("rest")


def date_fields(param: SearchParam) -> tuple[str, str]:
    """The (lo, hi) stored fields of a date parameter (both ``_lu`` for ``_lastUpdated``)."""
    if param.field == "_lu":
        return "_lu", "_lu"
    return param.field + "_lo", param.field + "_hi"


def _date(param: SearchParam, value: str, now: datetime | None) -> Filter:
    prefix, text = _split_prefix(param, value)
    searched = parse_range(text)
    if searched is None:
        raise SearchValueError(f"'{text}' is not a FHIR date/dateTime ('{param.name}'): use e.g. "
                               "2024, 2024-03, 2024-03-05, 2024-03-05T10:00:00Z.")  # fmt: skip
    lo_field, hi_field = date_fields(param)
    a, b = searched
    if prefix == "ap":
        a, b = _approximately(searched, now or datetime.now(UTC))
    if prefix in ("eq", "ap"):  # the target range lies within the (approximate) search range
        if prefix == "ap":  # ... or, for ap, merely overlaps it
            return _and({lo_field: {"$lte": b}}, {hi_field: {"$gte": a}})
        return _and({lo_field: {"$gte": a}}, {hi_field: {"$lte": b}})
    shapes: dict[str, Filter] = {
        "ne": {"$or": [{lo_field: {"$lt": a}}, {hi_field: {"$gt": b}}]},
        "gt": {hi_field: {"$gt": b}},  # some of the target lies after the search range
        "lt": {lo_field: {"$lt": a}},  # some of the target lies before it
        "ge": {"$or": [{hi_field: {"$gt": b}}, {lo_field: {"$gte": a}}]},  # gt, or eq
        "le": {"$or": [{lo_field: {"$lt": a}}, {hi_field: {"$lte": b}}]},  # lt, or eq
        "sa": {lo_field: {"$gt": b}},  # starts after the search range ends
        "eb": {hi_field: {"$lt": a}},  # ends before the search range starts
    }
    return shapes[prefix]


def _approximately(searched: DateRange, now: datetime) -> DateRange:
    """The search range widened by 10 % of the gap between now and the value on each side."""
    lo, hi = searched
    margin = abs(now - lo) / 10
    try:
        wide_lo = lo - margin
    except OverflowError:
        wide_lo = DATETIME_MIN
    try:
        wide_hi = hi + margin
    except OverflowError:
        wide_hi = DATETIME_MAX
    return max(wide_lo, DATETIME_MIN), min(wide_hi, DATETIME_MAX)


def _number(
    param: SearchParam, value: str, *, field: str | None = None, scale: Decimal = Decimal(1)
) -> Filter:
    """A number search on ``field`` (the parameter's own by default), the searched number and its
    implicit precision range multiplied by ``scale`` (a unit conversion) first."""
    prefix, text = _split_prefix(param, value)
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise SearchValueError(f"'{text}' is not a number ('{param.name}').") from None
    if not number.is_finite():
        raise SearchValueError(f"'{text}' is not a finite number ('{param.name}').")
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)
    half = Decimal(5) * Decimal(10) ** (exponent - 1)  # implicit precision: 100 is [99.5, 100.5)
    f = field or param.field

    def num(value: Decimal) -> int | float:
        return _num(value * scale)

    exact = num(number)
    if prefix == "eq":
        return {f: {"$gte": num(number - half), "$lt": num(number + half)}}
    if prefix == "ne":
        return {"$or": [{f: {"$lt": num(number - half)}}, {f: {"$gte": num(number + half)}}]}
    if prefix == "ap":
        margin = abs(number) / 10
        return {f: {"$gte": num(number - margin), "$lte": num(number + margin)}}
    ops = {"gt": "$gt", "lt": "$lt", "ge": "$gte", "le": "$lte"}
    if prefix not in ops:
        raise SearchValueError(f"Prefix '{prefix}' is not supported on number '{param.name}'.")
    return {f: {ops[prefix]: exact}}


def _quantity(param: SearchParam, value: str) -> Filter:
    """``[prefix]number[|system|code]``: the number as a number parameter, the unit (when
    given) by equality on ``_s_x_unit`` — ``system|code``, or ``||code`` matching a code or
    a unit text. A UCUM unit of ``search/ucum.py``'s set is searched in its dimension's
    canonical unit instead (``_s_x_canon``): ``1|…|g/L`` finds a stored ``100 mg/dL``."""
    parts = split_pipes(value)
    if len(parts) == 1:
        return _number(param, value)
    if len(parts) != 3 or not parts[2]:
        raise SearchValueError(f"Quantity '{value}' of '{param.name}' must be number, "
                               "number|system|code or number||code.")  # fmt: skip
    number, system, code = parts
    if not number:
        raise SearchValueError(f"Quantity '{value}' of '{param.name}' has no number.")
    converted = conversion(system, code)
    if converted is not None:
        canonical, factor = converted
        return _and(
            _number(param, number, field=param.field + "_canon", scale=factor),
            {param.field + "_canon_unit": canonical},
        )
    unit = f"{system}|{code}" if system else code
    return _and(_number(param, number), {param.field + "_unit": unit})


def _num(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


# -- helpers -------------------------------------------------------------------------------------


def _and(*conditions: Filter) -> Filter:
    """Several conditions side by side in one document; two on one field merge their operators
    (``{"_lu": {"$gte": a, "$lte": b}}``) instead of the second silently replacing the first."""
    out: Filter = {}
    for condition in conditions:
        for key, cond in condition.items():
            if key in out and isinstance(out[key], dict) and isinstance(cond, dict):
                out[key] = {**out[key], **cond}
            else:
                out[key] = cond
    return out


def _is_plain(value: Any) -> bool:
    """Whether a condition value is a plain equality operand (not an operator document/regex)."""
    return isinstance(value, str | int | float | datetime) and not isinstance(value, bool)


__all__ = [
    "PREFIXES",
    "SearchValueError",
    "build_or_filter",
    "build_param_filter",
    "date_fields",
    "split_pipes",
    "unescape",
]
