"""Establishment systems as senders (*authentification indirecte*).

A hospital's, laboratory's or pharmacy's information system authenticates as the establishment
(a system token carrying ``organization``) and declares the professional in the request: the
author of the documents it sends, or ``on_behalf_of`` (an RPPS / IdNatPs) for other requests.
The declared professional counts only when the directory has a PractitionerRole linking them to
the token's organisation; every DMP rule is then decided for *that* professional (their
profession and specialty come from that PractitionerRole, not from the document), and the
AuditEvent names both the system and the professional.

Facts read per request (all led by a plain top-level equality): Practitioner by
``_s_identifier`` (one query per RPPS spelling), PractitionerRole by ``_s_practitioner``, and a
PractitionerRole by ``_id`` when an author is a literal ``PractitionerRole/x``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from ..auth.caller import Caller
from ..errors import Forbidden
from ..storage.store import ResourceStore
from .fields import RPPS_SYSTEMS, actor_keys, rpps_keys

PROFESSION_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
SPECIALTY_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_R38-SpecialiteOrdinale/FHIR/TRE-R38-SpecialiteOrdinale"
#: Resource types whose writes an establishment system makes for a declared professional.
DECLARING_TYPES = frozenset({"DocumentReference", "List"})


def _code(concepts: Any, system: str) -> str | None:
    if isinstance(concepts, dict):
        concepts = [concepts]
    for concept in concepts or ():
        for coding in (concept or {}).get("coding") or ():
            if coding.get("system") == system and isinstance(coding.get("code"), str):
                return str(coding["code"])
    return None


async def _no_resolve(reference: str) -> dict[str, Any] | None:
    return None


class EstablishmentDirectory:
    """Who works for the token's organisation, as the directory says (one request's look-ups)."""

    def __init__(self, store: ResourceStore, organization: str) -> None:
        self.store = store
        self.organization = organization
        self._roles: dict[str, list[dict[str, Any]]] = {}  # Practitioner/x -> its roles here
        self._by_rpps: dict[str, list[str]] = {}  # every document of a Bundle names the same author

    async def practitioners_by_rpps(self, value: str) -> list[str]:
        """``Practitioner/x`` whose RPPS / IdNatPs identifier is ``value`` (either spelling)."""
        if value not in self._by_rpps:
            self._by_rpps[value] = await self._practitioners_by_rpps(value)
        return self._by_rpps[value]

    async def _practitioners_by_rpps(self, value: str) -> list[str]:
        found: set[str] = set()
        for key in rpps_keys(value):
            spelling = key.removeprefix("rpps:")
            for doc in await self.store.find(
                "Practitioner", {"_s_identifier": spelling, "_deleted": False}, projection={"resource": 1}
            ):
                identifiers = (doc.get("resource") or {}).get("identifier") or ()
                if any(i.get("system") in RPPS_SYSTEMS and i.get("value") == spelling for i in identifiers):
                    found.add(f"Practitioner/{doc['_id']}")
        return sorted(found)

    async def roles_here(self, practitioner: str) -> list[dict[str, Any]]:
        """The active PractitionerRoles of ``practitioner`` in this organisation."""
        if practitioner not in self._roles:
            docs = await self.store.find(
                "PractitionerRole", {"_s_practitioner": practitioner, "_deleted": False}
            )
            self._roles[practitioner] = [
                d["resource"]
                for d in docs
                if ((d.get("resource") or {}).get("organization") or {}).get("reference") == self.organization
                and d["resource"].get("active") is not False
            ]
        return self._roles[practitioner]

    async def role_practitioner(self, role_id: str) -> str | None:
        """The practitioner of ``PractitionerRole/role_id`` when that role is of this organisation."""
        docs = await self.store.find("PractitionerRole", {"_id": role_id, "_deleted": False}, limit=1)
        role = docs[0].get("resource") if docs else None
        if not role or role.get("active") is False:
            return None
        if (role.get("organization") or {}).get("reference") != self.organization:
            return None
        ref = (role.get("practitioner") or {}).get("reference")
        return ref if isinstance(ref, str) and ref.startswith("Practitioner/") else None

    async def members(self, keys: Iterable[str]) -> list[str]:
        """The practitioners of this organisation that an author's keys designate."""
        candidates: set[str] = set()
        for key in keys:
            if key.startswith("Practitioner/"):
                candidates.add(key)
            elif key.startswith("rpps:"):
                candidates.update(await self.practitioners_by_rpps(key.removeprefix("rpps:")))
            elif key.startswith("PractitionerRole/"):
                practitioner = await self.role_practitioner(key.removeprefix("PractitionerRole/"))
                if practitioner:
                    candidates.add(practitioner)
        return sorted([p for p in candidates if await self.roles_here(p)])

    async def professional(self, system: Caller, practitioner: str) -> Caller:
        """The declared professional as a caller: identity and profession from the directory,
        establishment and scopes from the system's token."""
        roles = await self.roles_here(practitioner)
        role = roles[0]
        found = await self.store.find(
            "Practitioner", {"_id": practitioner.removeprefix("Practitioner/")}, limit=1
        )
        identifiers = ((found[0].get("resource") or {}) if found else {}).get("identifier") or ()
        ordered = sorted(identifiers, key=lambda i: i.get("system") != RPPS_SYSTEMS[0])  # IdNatPs first
        rpps = next((i.get("value") for i in ordered if i.get("system") in RPPS_SYSTEMS), None)
        return replace(
            system,
            kind="practitioner",
            subject=practitioner,
            profession=_code(role.get("code"), PROFESSION_SYSTEM),
            specialty=_code(role.get("specialty"), SPECIALTY_SYSTEM),
            rpps=rpps if isinstance(rpps, str) else None,
            on_behalf_of=None,
            via_system=system.client_id or system.subject,
        )


def _authors(rtype: str, resource: Mapping[str, Any]) -> list[Any]:
    if rtype == "DocumentReference":
        return list(resource.get("author") or ())
    if rtype == "List":
        return [resource.get("source")] if resource.get("source") else []
    return []


async def declared_professional(
    store: ResourceStore, system: Caller, resources: Iterable[Mapping[str, Any]]
) -> Caller | None:
    """The professional an establishment system writes for (None: nothing of patient data is
    written). Documents decide (their authors); a submission set's source only when the
    request writes no document. 403 when the token names no organisation, or an author of no
    document belongs to it, or the documents do not share one author of the organisation."""
    writes = [
        (str(r.get("resourceType")), r)
        for r in resources
        if isinstance(r, Mapping) and r.get("resourceType") in DECLARING_TYPES
    ]
    if not writes:
        return None
    if system.organization is None:
        raise Forbidden(
            "An establishment system writes patient data only with a token that names its "
            "organisation (claim 'organization'); this one names none."
        )
    directory = EstablishmentDirectory(store, system.organization)
    documents = [w for w in writes if w[0] == "DocumentReference"] or writes
    common: set[str] | None = None
    for rtype, resource in documents:
        keys: list[str] = []
        for author in _authors(rtype, resource):
            keys += await actor_keys(author, dict(resource), _no_resolve)
        members = set(await directory.members(keys))
        element = "author" if rtype == "DocumentReference" else "source"
        if not members:
            raise Forbidden(
                f"{rtype}.{element} names no professional of {system.organization} (the "
                "establishment of this system's token): an establishment system sends only "
                "what its own professionals author."
            )
        common = members if common is None else common & members
    if not common:
        raise Forbidden(
            "The documents of one request are authored by one professional of the establishment "
            "(their authors have none in common)."
        )
    return await directory.professional(system, sorted(common)[0])


async def acting_professional(store: ResourceStore, system: Caller) -> Caller:
    """A system token with ``on_behalf_of``: the professional it reads (and writes) for."""
    assert system.on_behalf_of is not None and system.organization is not None
    directory = EstablishmentDirectory(store, system.organization)
    members = await directory.members([f"rpps:{system.on_behalf_of}"])
    if not members:
        raise Forbidden(f"on_behalf_of {system.on_behalf_of} is not a professional of {system.organization}.")
    return await directory.professional(system, members[0])
