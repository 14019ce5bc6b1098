"""SMART App Launch scopes: what a token lets its bearer do, whatever the caller's rights.

The access policy asks two questions: may this caller see this patient's data (the DMP
rules), and did the user *delegate* this interaction to the application (the scopes). This
module answers the second one, from the space-separated ``scope`` claim.

Grammar (SMART v2, with the v1 forms still issued by many servers)::

    scope        = context "/" type "." permissions [ "?" query ]
    context      = "patient" | "user" | "system"
    type         = a FHIR resource type | "*"
    permissions  = v2: a non-empty subsequence of "cruds", in that order (``rs``, ``cud``)
                 | v1: "read" (= rs) | "write" (= cud) | "*" (= cruds)

Decisions (each is the safe choice, documented so that nobody "fixes" it by accident):

* **Strict contexts.** A scope only counts in its own context: ``patient/`` scopes for a
  patient or a legal representative, ``user/`` for a practitioner, ``system/`` for a
  backend client. A patient holding ``user/*.cruds`` gets nothing from it: the IdP meant
  something else, and guessing would widen access.
* **Fine-grained scopes grant nothing.** ``patient/Observation.rs?category=laboratory`` is
  parsed (the query is kept for diagnostics) but ``allows`` ignores it: we do not apply the
  query as a filter yet, and granting the unrestricted interaction would exceed what the
  user consented to.
* **Malformed scopes grant nothing** (``patient/DocumentReference.sr``, ``patient/x.rs``,
  ``foo/*.rs``); non-resource scopes (``openid``, ``fhirUser``, ``launch/patient``,
  ``offline_access``...) are simply not resource grants and are ignored.
* History counts as ``r`` (the caller passes ``"r"``); ``resource_type="*"`` in ``allows``
  (a whole-system interaction) is only granted by a ``*`` scope.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

CONTEXTS = ("patient", "user", "system")
INTERACTIONS = "cruds"
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_SCOPE = re.compile(
    r"(?P<context>patient|user|system)/(?P<type>\*|[A-Z][A-Za-z]{0,63})\.(?P<perms>[A-Za-z*]{1,5})"
    r"(?:\?(?P<query>.*))?",
    re.DOTALL,
)
#: A scope claim longer than this is refused by the token verifier before parsing.
MAX_SCOPE_CHARS = 8192


@dataclass(frozen=True, slots=True)
class Scope:
    """One resource scope, e.g. ``patient/DocumentReference.rs``."""

    context: str
    resource_type: str  # a FHIR type or "*"
    interactions: frozenset[str]  # subset of c r u d s
    #: Parameters after ``?``: a fine-grained scope, which grants nothing (yet).
    query: tuple[tuple[str, str], ...] = ()

    @property
    def restricted(self) -> bool:
        return bool(self.query)

    def grants(self, context: str, resource_type: str, interaction: str) -> bool:
        return (
            not self.restricted
            and self.context == context
            and self.resource_type in ("*", resource_type)
            and interaction in self.interactions
        )

    def __str__(self) -> str:
        perms = "".join(i for i in INTERACTIONS if i in self.interactions)
        text = f"{self.context}/{self.resource_type}.{perms}"
        if self.query:
            text += "?" + "&".join(f"{k}={v}" for k, v in self.query)
        return text


def parse_permissions(text: str) -> frozenset[str] | None:
    """``"rs"`` → {r, s}; v1 ``read``/``write``/``*``; None when malformed (out of order,
    repeated or unknown letters: SMART v2 requires the canonical order)."""
    if text in _V1:
        return frozenset(_V1[text])
    position = 0
    for letter in text:
        found = INTERACTIONS.find(letter, position)
        if found < 0:
            return None
        position = found + 1
    return frozenset(text) if text else None


def parse_scope(token: str) -> Scope | None:
    """One scope token → a ``Scope``, or None when it is not a (well-formed) resource scope."""
    match = _SCOPE.fullmatch(token)
    if match is None:
        return None
    interactions = parse_permissions(match["perms"])
    if interactions is None:
        return None
    query: tuple[tuple[str, str], ...] = ()
    if match["query"] is not None:
        # An empty or unparsable query still marks the scope as restricted: refuse, not widen.
        pairs = parse_qsl(match["query"], keep_blank_values=True)
        query = tuple(pairs) or (("", match["query"]),)
    return Scope(match["context"], match["type"], interactions, query)


@dataclass(frozen=True, slots=True)
class ScopeSet:
    """The resource scopes of one token. ``ScopeSet()`` grants nothing."""

    scopes: tuple[Scope, ...] = ()
    #: Everything, in every context: only for ``system_caller`` (internal jobs), never a token.
    unrestricted: bool = False
    #: The tokens that were not resource scopes (kept for logs and diagnostics).
    ignored: tuple[str, ...] = ()

    @classmethod
    def everything(cls) -> ScopeSet:
        return cls(unrestricted=True)

    @classmethod
    def parse(cls, text: str | None) -> ScopeSet:
        """Parse a space-separated ``scope`` claim (any whitespace separates)."""
        scopes: list[Scope] = []
        ignored: list[str] = []
        for token in (text or "").split():
            scope = parse_scope(token)
            if scope is None:
                ignored.append(token)
            elif scope not in scopes:
                scopes.append(scope)
        return cls(tuple(scopes), False, tuple(ignored))

    def allows(self, context: str, resource_type: str, interaction: str) -> bool:
        """May a caller in ``context`` (patient | user | system) perform ``interaction``
        (c r u d s) on ``resource_type`` (a FHIR type, or ``*`` for a whole-system call)?"""
        if self.unrestricted:
            return True
        if context not in CONTEXTS or len(interaction) != 1 or interaction not in INTERACTIONS:
            return False
        return any(s.grants(context, resource_type, interaction) for s in self.scopes)

    def __str__(self) -> str:
        if self.unrestricted:
            return "<everything>"
        return " ".join(str(s) for s in self.scopes)
