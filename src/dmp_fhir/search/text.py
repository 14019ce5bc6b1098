"""String normalisation shared by extraction and filters, so both sides agree byte for byte.

FHIR string search is case- and accent-insensitive: ``Hélène`` must be found by ``helene``,
``HEL`` or ``Hél``. We fold both the stored values and the query the same way (NFKD, combining
marks removed, casefold, whitespace collapsed) and store every prefix of a folded value, so that
the default starts-with search is one plain equality on an array field (pushed down on FerretDB,
indexed on MongoDB).
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

MAX_PREFIX = 64  # longer prefixes are not stored: a longer query adds a regex on the full value


#: Ligatures that French names use and that NFKD leaves alone (Œuvray, Lætitia).
_LIGATURES = str.maketrans({"œ": "oe", "Œ": "oe", "æ": "ae", "Æ": "ae"})


@lru_cache(maxsize=8192)
def normalize(value: str) -> str:
    """Fold ``value`` for comparison: no accents or ligatures, case-folded, single spaces."""
    decomposed = unicodedata.normalize("NFKD", value.translate(_LIGATURES))
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())


def prefixes(folded: str) -> list[str]:
    """Every prefix (1..64 characters) of an already folded value."""
    return [folded[:i] for i in range(1, min(len(folded), MAX_PREFIX) + 1)]


_REGEX_SPECIAL = frozenset("\\.^$|?*+()[]{}-/#&~ ")


def regex_escape(value: str) -> str:
    """Escape ``value`` so that it matches itself literally in PCRE (MongoDB) and RE2 (FerretDB).

    Both engines accept a backslash before ASCII punctuation or space; letters, digits and
    non-ASCII characters are left alone (escaping a letter would change its meaning). Control
    characters become ``\\xHH``: a BSON regex is a C string, so a raw NUL could not even be sent.
    """
    out: list[str] = []
    for c in value:
        if c in _REGEX_SPECIAL:
            out.append("\\" + c)
        elif ord(c) < 0x20 or c == "\x7f":
            out.append(f"\\x{ord(c):02x}")
        else:
            out.append(c)
    return "".join(out)
