"""Canonical units for quantity search: a small, documented set of UCUM conversions.

A laboratory reports glucose in g/L, another in mg/dL; a search in either unit should find both.
Full UCUM (prefixes, dimensional analysis) is not implemented: the units below are converted to
one canonical unit per dimension, at write time into ``_s_<param>_canon`` (the number) and
``_s_<param>_canon_unit`` (the canonical code), and at search time when the searched unit is in
the set. Only quantities coded in UCUM (``system`` = http://unitsofmeasure.org) are converted;
any other unit is matched as written, as before.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

UCUM = "http://unitsofmeasure.org"

#: UCUM code → (canonical code, factor to the canonical unit).
CONVERSIONS: dict[str, tuple[str, Decimal]] = {
    # mass concentration → g/L
    "g/L": ("g/L", Decimal(1)),
    "g/dL": ("g/L", Decimal(10)),
    "mg/dL": ("g/L", Decimal("0.01")),
    "mg/L": ("g/L", Decimal("0.001")),
    # substance concentration → mmol/L
    "mmol/L": ("mmol/L", Decimal(1)),
    "mol/L": ("mmol/L", Decimal(1000)),
    "umol/L": ("mmol/L", Decimal("0.001")),
    "mol/m3": ("mmol/L", Decimal(1)),
}


def conversion(system: Any, code: Any) -> tuple[str, Decimal] | None:
    """The canonical unit and factor of a UCUM-coded unit in the set (None otherwise)."""
    if system != UCUM or not isinstance(code, str):
        return None
    return CONVERSIONS.get(code)


def canonical_value(number: int | float, factor: Decimal) -> float | None:
    """``number`` in the canonical unit, computed in decimal (the search bounds are too)."""
    try:
        return float(Decimal(str(number)) * factor)
    except InvalidOperation:
        return None
