"""How a caller stands towards one patient's record: the patient-level decision.

excluded actor ─► EXCLUDED                 (403, always)
record closed  ─► CLOSED                   (403 for professionals; the patient still reads)
denied by P    ─► BLOCKED                  (403, even in an emergency)
P's GP         ─► GP                       (sees every section, masked documents too;
                                            the occupational physician: AUTHORISED, matrix only)
permitted by P ─► AUTHORISED               (matrix applies, masked documents hidden)
emergency      ─► EMERGENCY                (bris de glace: eligible, ETREAT/BTG, not opposed)
otherwise      ─► NOT_AUTHORISED           (403)
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..auth.caller import EMERGENCY_PURPOSES, Caller
from ..search.dates import parse_range
from .fields import PERSON_KEY_PREFIXES, rpps_keys
from .matrix import AccessMatrix


class Relation(enum.Enum):
    SELF = "self"
    REPRESENTATIVE = "legal representative"
    GP = "médecin traitant"
    AUTHORISED = "authorised by the patient"
    EMERGENCY = "emergency access (bris de glace)"
    NOT_AUTHORISED = "not authorised by the patient"
    OPPOSED = "the patient opposed emergency access"
    BLOCKED = "blocked by the patient"
    CLOSED = "the patient's DMP is closed"
    EXCLUDED = "this kind of actor may never access a DMP"

    @property
    def grants_access(self) -> bool:
        return self in _GRANTING


_GRANTING = {Relation.SELF, Relation.REPRESENTATIVE, Relation.GP, Relation.AUTHORISED, Relation.EMERGENCY}

#: Relations under which a document's own author still sees it.
AUTHOR_KEEPS_ACCESS = frozenset(
    {Relation.GP, Relation.AUTHORISED, Relation.EMERGENCY, Relation.NOT_AUTHORISED, Relation.OPPOSED}
)


def person_keys(caller: Caller) -> frozenset[str]:
    """The keys that name the caller as a person (document authorship)."""
    return frozenset(k for k in caller_keys(caller) if k.startswith(PERSON_KEY_PREFIXES))


def caller_keys(caller: Caller) -> frozenset[str]:
    """The keys a Consent actor or a document author may name the caller by."""
    keys: set[str] = set()
    if caller.kind == "practitioner":
        keys.add(caller.subject)
        if caller.rpps:
            keys.update(rpps_keys(caller.rpps))
        if caller.organization:
            keys.add(caller.organization)
        if caller.finess:
            keys.add(f"finess:{caller.finess}")
    return frozenset(keys)


def roles_keys(roles: Iterable[dict[str, Any]]) -> tuple[frozenset[str], frozenset[str]]:
    """The caller's PractitionerRoles (stored documents with ``_s_organization``) → the keys
    naming them as a person (``PractitionerRole/x``) and the establishments they work for
    (``Organization/y``): an establishment's authorisation covers its professionals, "réputé
    autorisé" as its care team, and its block refuses them."""
    persons = frozenset(f"PractitionerRole/{d['_id']}" for d in roles)
    establishments = frozenset(
        value
        for d in roles
        for value in d.get("_s_organization") or ()
        if isinstance(value, str) and value.startswith("Organization/")
    )
    return persons, establishments


@dataclass(frozen=True, slots=True)
class ConsentFindings:
    blocked: bool = False
    permitted: bool = False
    emergency_opposed: bool = False


def _active(provision: dict[str, Any], now: datetime) -> bool:
    period = provision.get("period")
    if not isinstance(period, dict):
        return True
    start = parse_range(period["start"]) if isinstance(period.get("start"), str) else None
    end = parse_range(period["end"]) if isinstance(period.get("end"), str) else None
    return (start is None or start[0] <= now) and (end is None or now <= end[1])


def _actor_keys(provision: dict[str, Any]) -> set[str]:
    """Actor keys named directly (``Type/id`` and identifiers); contained actors are resolved
    at write time into the Consent's ``_p_actors`` field, which preselects consents."""
    from .fields import identifier_keys

    keys: set[str] = set()
    for actor in provision.get("actor") or []:
        ref = actor.get("reference") or {}
        keys.update(identifier_keys(ref.get("identifier")))
        text = ref.get("reference")
        if isinstance(text, str) and "/" in text:
            parts = text.split("/_history/")[0].split("/")
            keys.add(f"{parts[-2]}/{parts[-1]}")
    return keys


def _purposes(provision: dict[str, Any]) -> set[str]:
    return {str(p.get("code")) for p in provision.get("purpose") or [] if isinstance(p, dict)}


def read_consents(
    consents: Iterable[dict[str, Any]], keys: frozenset[str], now: datetime | None = None
) -> ConsentFindings:
    """What the patient's active privacy consents say about an actor with these keys."""
    now = now or datetime.now(UTC)
    blocked = permitted = opposed = False
    for consent in consents:
        if consent.get("status") != "active":
            continue
        stack: list[tuple[dict[str, Any], str]] = []
        top = consent.get("provision")
        if isinstance(top, dict):
            stack.append((top, top.get("type", "permit")))
        while stack:
            provision, inherited = stack.pop()
            kind = provision.get("type", inherited)
            if not _active(provision, now):
                continue  # an expired provision takes its exceptions with it
            for child in provision.get("provision") or []:
                stack.append((child, "permit" if kind == "deny" else "deny"))
            actors = _actor_keys(provision)
            names_caller = bool(actors & keys)
            purposes = _purposes(provision)
            if kind == "deny":
                if purposes & EMERGENCY_PURPOSES and (not actors or names_caller):
                    opposed = True
                elif names_caller:
                    blocked = True  # a deny naming the actor blocks, whatever its purpose
            elif kind == "permit" and names_caller:
                permitted = True
    return ConsentFindings(blocked, permitted, opposed)


def professional_relation(
    caller: Caller,
    patient: dict[str, Any] | None,  # the stored Patient document (with its ``_p_gp`` keys)
    consents: Iterable[dict[str, Any]],
    record_status: str,
    matrix: AccessMatrix,
    *,
    keys: frozenset[str],  # every key naming the caller (roles, organisation)
    person: frozenset[str],  # the keys naming the caller as a person
) -> Relation:
    """The patient-level decision for a professional (see the module docstring)."""
    if matrix.is_excluded(caller.actor_category, caller.organization_sector):
        return Relation.EXCLUDED
    if record_status != "open":
        return Relation.CLOSED
    findings = read_consents(consents, keys)
    if findings.blocked:
        return Relation.BLOCKED
    if patient is not None and person & set(patient.get("_p_gp") or ()):
        # Named médecin traitant: deemed authorised — but an occupational physician never
        # gets the GP's view, only their matrix rule (the occupational-health section).
        if matrix.is_occupational(caller.profession, caller.specialty):
            return Relation.AUTHORISED
        return Relation.GP
    if findings.permitted:
        return Relation.AUTHORISED
    if caller.wants_emergency_access and matrix.may_break_glass(caller.profession, caller.care_setting):
        return Relation.OPPOSED if findings.emergency_opposed else Relation.EMERGENCY
    return Relation.NOT_AUTHORISED
