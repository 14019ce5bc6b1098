"""The DMP access policy: the one place that decides who sees and writes what.

Reads: ``scope(rtype)`` is a MongoDB filter combined with *every* query (read, search, count,
include, history, chains), so a hidden document is simply absent — from pages and totals
alike. ``explain_hidden`` turns a patient-level refusal into a 403. Writes: ``check_write``.
See the README's access table; the rules' data lives in ``profiles/access-matrix.json``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..auth.caller import Caller
from ..errors import Forbidden, NotFound
from ..lifecycle.identity import patient_ins_keys
from ..registry import CLINICAL_TYPES
from ..search.engine import eq_or_in
from ..storage.store import ResourceStore
from .authorship import ESTABLISHMENT_PREFIXES, entitled_authors, holder_authors
from .base import Interaction, WriteAction
from .fields import Resolver, labels_of
from .match import admits
from .matrix import AccessMatrix
from .relations import (
    AUTHOR_KEEPS_ACCESS,
    Relation,
    caller_keys,
    person_keys,
    professional_relation,
    roles_keys,
)
from .senders import declared_professional

DIRECTORY_TYPES = frozenset({"Practitioner", "PractitionerRole", "Organization"})
PATIENT_DATA_TYPES = (
    frozenset({"Patient", "DocumentReference", "List", "Consent", "AuditEvent", "Binary", "RelatedPerson"})
    | CLINICAL_TYPES
)
#: Read and written like documents: their ``_p_keys`` place them in a section of the matrix.
DOCUMENT_LIKE = frozenset({"DocumentReference"}) | CLINICAL_TYPES
#: The record's holders: the patient and their legal representatives.
HOLDER_RELATIONS = frozenset({Relation.SELF, Relation.REPRESENTATIVE})
MASKED = "MASQUE_PS"
INVISIBLE_PATIENT = "INVISIBLE_PATIENT"
INVISIBLE_REPRESENTATIVES = "INVISIBLE_REPRESENTANTS_LEGAUX"
SECRET_CONNECTION = "CONNEXION_SECRETE"  # on audit events of a minor's secret connection
RECORDS = "dmp_record"  # one document per patient whose DMP is not simply open
_NOTHING: dict[str, Any] = {"_id": {"$in": []}}


@dataclass(frozen=True, slots=True)
class _Facts:
    """What the policy reads about some patients: Patient documents, Consents, record status."""

    patients: dict[str, dict[str, Any]]
    consents: dict[str, list[dict[str, Any]]]
    statuses: dict[str, str]


class DmpPolicy:
    """The policy for one authenticated caller, for the duration of one request."""

    def __init__(self, caller: Caller, store: ResourceStore, matrix: AccessMatrix) -> None:
        self.caller = caller
        self.store = store
        self.matrix = matrix
        self.keys = caller_keys(caller)
        self.person = person_keys(caller)
        self.rule = matrix.rule_for(caller.profession, caller.specialty)
        self.relations: dict[str, Relation] = {}
        self._complete = False  # relations to every candidate patient are known
        self._roles_loaded = False
        self.excluded = caller.kind == "practitioner" and matrix.is_excluded(
            caller.actor_category, caller.organization_sector
        )
        self._closed: set[str] = set()

    # -- scopes (SMART) -----------------------------------------------------------------

    def require(self, rtype: str, interaction: Interaction) -> None:
        context = self.caller.scope_context
        if context is None or not self.caller.scopes.allows(context, rtype, interaction):
            raise Forbidden(
                f"The token's scopes do not allow '{interaction}' on {rtype}.",
                code="forbidden",
                headers={"WWW-Authenticate": 'Bearer realm="dmp-fhir", error="insufficient_scope"'},
            )

    # -- establishment systems (policy/senders.py) --------------------------------------

    async def declare_sender(self, resources: Iterable[Mapping[str, Any]]) -> Caller:
        """An establishment system writing patient data: from here on, every rule is decided
        for the professional its documents declare (403 when it names none of its own)."""
        if self.caller.kind == "system":
            professional = await declared_professional(self.store, self.caller, resources)
            if professional is not None:
                DmpPolicy.__init__(self, professional, self.store, self.matrix)
        return self.caller

    async def authorship(
        self, rtype: str, resource: Mapping[str, Any], authors: list[str], resolve: Resolver
    ) -> list[str]:
        """The ``_p_authors`` to store: only authors entitled to write it (policy/authorship.py)."""
        kind = self.caller.kind
        if kind == "internal":
            return authors
        unsourced = rtype == "List" and not resource.get("source")  # a folder: its writer's
        if kind in ("patient", "related-person"):
            if unsourced and self.caller.patient:
                return [self.caller.subject]
            return holder_authors(authors)
        if kind != "practitioner":
            return []
        await self._load_roles()
        if unsourced:
            return sorted(self.person)
        # The writing establishment: the token's; without one, those of the writer's roles.
        establishments = {k for k in caller_keys(self.caller) if k.startswith(ESTABLISHMENT_PREFIXES)} or {
            k for k in self.keys if k.startswith(ESTABLISHMENT_PREFIXES)
        }
        return await entitled_authors(
            rtype, resource, resolve, writer=self.person, establishments=establishments
        )

    # -- relations to patients ----------------------------------------------------------

    async def _load_roles(self) -> None:
        """The caller's current PractitionerRoles name them too (Consents, GP, authorship)."""
        if self._roles_loaded or self.caller.kind != "practitioner":
            return
        roles = await self.store.find(
            "PractitionerRole",
            {"_s_practitioner": self.caller.subject, "_deleted": False},
            projection={"_id": 1, "_s_organization": 1},
        )
        role_keys, establishments = roles_keys(roles)
        self.keys = self.keys | role_keys | establishments  # the care team of an establishment
        self.person = self.person | role_keys
        self._roles_loaded = True

    async def prepare(self, focus_patients: set[str] | None = None) -> None:
        """Relations to ``focus_patients`` only (a read, a search naming its patients), or —
        without focus — to every patient this caller may have a relation with.

        The facts (the caller's roles; each patient's identity, consents and record status)
        are independent reads: they are sent together, not one after the other.
        """
        if self.caller.kind in ("patient", "related-person"):
            for pid in (focus_patients or set()) | ({self.caller.patient} if self.caller.patient else set()):
                if pid not in self.relations:
                    self.relations[pid] = await self._own_relation(pid)
            return
        if self.caller.kind != "practitioner":
            return
        if focus_patients is not None:
            todo = set(focus_patients) - set(self.relations)
            _, facts = await asyncio.gather(self._load_roles(), self._facts(todo))
            self._relate(todo, facts)
            return
        if self._complete:
            return
        await self._load_roles()
        candidates, closed = await asyncio.gather(
            self._candidate_patients(),
            self.store.find(RECORDS, {"status": "closed"}, projection={"_id": 1}),
        )
        self._closed = {d["_id"] for d in closed}
        todo = candidates - set(self.relations)
        self._relate(todo, await self._facts(todo))
        self._complete = True

    async def _candidate_patients(self) -> set[str]:
        """Patients this professional may have a relation with: whose GP they are, or whose
        consents name them (permit or deny)."""
        if not self.keys:
            return set()
        keys = sorted(self.keys)
        patients, consents = await asyncio.gather(
            self.store.find(
                "Patient", {"_p_gp": {"$in": sorted(self.person)}, "_deleted": False}, projection={"_id": 1}
            ),
            self.store.find(
                "Consent", {"_p_actors": {"$in": keys}, "_deleted": False}, projection={"_p_patient": 1}
            ),
        )
        out = {d["_id"] for d in patients}
        out |= {d["_p_patient"] for d in consents if d.get("_p_patient")}
        return out

    async def _facts(self, patients: set[str]) -> _Facts:
        """What the decision needs about these patients, fetched concurrently."""
        if not patients:
            return _Facts({}, {}, {})
        ids = sorted(patients)
        docs, consent_docs, records = await asyncio.gather(
            self.store.find("Patient", {"_id": eq_or_in(ids), "_deleted": False}),
            self.store.find("Consent", {"_p_patient": eq_or_in(ids), "_deleted": False}),
            self.store.find(RECORDS, {"_id": eq_or_in(ids)}),
        )
        consents: dict[str, list[dict[str, Any]]] = {}
        for doc in consent_docs:
            consents.setdefault(doc["_p_patient"], []).append(doc["resource"])
        return _Facts(
            {d["_id"]: d for d in docs},
            consents,
            {d["_id"]: d.get("status", "open") for d in records},
        )

    def _relate(self, patients: set[str], facts: _Facts) -> None:
        for pid in sorted(patients):
            if pid not in facts.patients:
                self.relations[pid] = Relation.NOT_AUTHORISED
                continue
            self.relations[pid] = professional_relation(
                self.caller,
                facts.patients[pid],
                facts.consents.get(pid, []),
                facts.statuses.get(pid, "open"),
                self.matrix,
                keys=self.keys,
                person=self.person,
            )

    async def _own_relation(self, pid: str) -> Relation:
        if pid != self.caller.patient:
            return Relation.NOT_AUTHORISED
        if self.caller.kind == "patient":
            return Relation.SELF
        # A legal representative acts only while their RelatedPerson links them to the patient.
        kind, _, rp_id = self.caller.subject.partition("/")
        found = (
            await self.store.find("RelatedPerson", {"_id": rp_id, "_deleted": False}, limit=1)
            if kind == "RelatedPerson" and rp_id
            else []
        )
        if not found:
            return Relation.NOT_AUTHORISED
        resource = found[0].get("resource") or {}
        if resource.get("active") is False or found[0].get("_p_patient") != pid:
            return Relation.NOT_AUTHORISED
        return Relation.REPRESENTATIVE

    def _granted(self, *relations: Relation) -> list[str]:
        return sorted(p for p, r in self.relations.items() if r in relations)

    # -- read filters -------------------------------------------------------------------

    def scope(self, rtype: str) -> Mapping[str, Any] | None:
        kind = self.caller.kind
        if kind == "internal":
            return {}
        context = self.caller.scope_context
        scopes = self.caller.scopes
        if context is None or not (scopes.allows(context, rtype, "r") or scopes.allows(context, rtype, "s")):
            return None  # includes, chains and _has obey the token's scopes too
        if rtype in DIRECTORY_TYPES:
            return {}
        if self.excluded:
            return None
        if kind in ("patient", "related-person"):
            return self._own_scope(rtype)
        if kind == "practitioner":
            return self._professional_scope(rtype)
        return None  # system clients read no patient data

    def _own_scope(self, rtype: str) -> Mapping[str, Any] | None:
        pid = self.caller.patient
        if pid is None or not self.relations.get(pid, Relation.NOT_AUTHORISED).grants_access:
            return None
        if rtype == "Patient":
            return {"_p_patient": pid}  # (not ``_id``: history ids are ``id/version``)
        hidden = [INVISIBLE_PATIENT]
        if self.caller.kind == "related-person":
            hidden += [INVISIBLE_REPRESENTATIVES, SECRET_CONNECTION]
        if rtype in DOCUMENT_LIKE or rtype in ("List", "AuditEvent"):
            # What refers to a hidden document (a submission set, an event) is hidden like it.
            return {"_p_patient": pid, "_p_labels": {"$nin": hidden}}
        if rtype in ("Consent", "RelatedPerson"):
            return {"_p_patient": pid}
        return None

    def _professional_scope(self, rtype: str) -> Mapping[str, Any] | None:
        granted = self._granted(Relation.GP, Relation.AUTHORISED, Relation.EMERGENCY)
        if rtype in ("Patient", "RelatedPerson"):
            return {"_p_patient": eq_or_in(granted)} if granted else None
        if rtype not in DOCUMENT_LIKE and rtype != "List":
            return None  # Consents and the audit trail are the patient's own
        groups: list[dict[str, Any]] = []
        gp = self._granted(Relation.GP)
        if gp and rtype in DOCUMENT_LIKE:
            groups.append({"_p_patient": eq_or_in(gp), "_p_keys": {"$in": sorted(self.matrix.gp_read)}})
        elif gp:
            # A submission set reveals every document it lists: the GP sees it unless it lists
            # one outside what the GP reads (occupational health).
            outside = sorted(set(self.matrix.sections) - self.matrix.gp_read)
            groups.append({"_p_patient": eq_or_in(gp), "_p_keys": {"$nin": outside}})
        matrix_patients = self._granted(Relation.AUTHORISED, Relation.EMERGENCY)
        if matrix_patients and self.rule is not None and self.rule.read and rtype in DOCUMENT_LIKE:
            groups.append(
                {
                    "_p_patient": eq_or_in(matrix_patients),
                    "_p_keys": {"$in": sorted(self.rule.read)},
                    "_p_labels": {"$nin": [MASKED]},
                }
            )
        if self.person:
            authored: dict[str, Any] = {"_p_authors": {"$in": sorted(self.person)}}
            if self._complete:
                refused = sorted(
                    {p for p, r in self.relations.items() if r not in AUTHOR_KEEPS_ACCESS} | self._closed
                )
                if refused:
                    authored["_p_patient"] = {"$nin": refused}
                groups.append(authored)
            else:
                # Only patients whose relation is known: an unknown one may have blocked us.
                allowed = sorted(p for p, r in self.relations.items() if r in AUTHOR_KEEPS_ACCESS)
                if allowed:
                    authored["_p_patient"] = eq_or_in(allowed)
                    groups.append(authored)
        if not groups:
            return None
        return groups[0] if len(groups) == 1 else {"$or": groups}

    async def binary_visible(self, binary: Mapping[str, Any]) -> bool:
        """Readable only through the one DocumentReference that owns it (its
        ``securityContext``), when that document lists it and the caller may see it."""
        owner = binary.get("_p_document")
        scope = self.scope("DocumentReference")
        if not isinstance(owner, str) or scope is None:
            return self.caller.kind == "internal"
        query: dict[str, Any] = {"_id": owner, "_p_binaries": binary["_rid"], "_deleted": False}
        docs = await self.store.find(
            "DocumentReference", {**query, "$and": [scope]}, limit=1, projection={"_id": 1}
        )
        return bool(docs)

    # -- refusals -----------------------------------------------------------------------

    async def explain_hidden(self, rtype: str, doc: Mapping[str, Any]) -> None:
        if rtype not in PATIENT_DATA_TYPES or self.caller.kind == "internal":
            return
        pid = doc.get("_p_patient")
        if self.caller.kind == "system":
            raise Forbidden("System clients do not read patient data.")
        if not isinstance(pid, str):
            return
        await self.prepare({pid})
        relation = self.relations.get(pid, Relation.NOT_AUTHORISED)
        if not relation.grants_access:
            raise Forbidden(f"Access to this patient's record is refused: {relation.value}.")
        if rtype in ("Consent", "AuditEvent") and self.caller.kind == "practitioner":
            raise Forbidden(f"Only the patient reads their {rtype} resources.")

    async def check_focus(self, focus_patients: set[str], rtype: str = "DocumentReference") -> None:
        await self.prepare(focus_patients)
        if self.caller.kind == "internal" or len(focus_patients) != 1:
            return
        pid = next(iter(focus_patients))
        relation = self.relations.get(pid, Relation.NOT_AUTHORISED)
        if self.caller.kind in ("patient", "related-person", "practitioner") and not relation.grants_access:
            if relation in AUTHOR_KEEPS_ACCESS and await self._authored_for(pid, rtype):
                return  # not authorised, but may still find the documents they authored
            raise Forbidden(f"Access to this patient's record is refused: {relation.value}.")

    async def _authored_for(self, pid: str, rtype: str = "DocumentReference") -> bool:
        """Whether the caller authored a resource of the searched type (a document for other
        searches) of this patient: they may still find it."""
        if not self.person:
            return False
        docs = await self.store.find(
            rtype if rtype in DOCUMENT_LIKE else "DocumentReference",
            {"_p_patient": pid, "_deleted": False, "_p_authors": {"$in": sorted(self.person)}},
            limit=1,
            projection={"_id": 1},
        )
        return bool(docs)

    # -- lifecycle operations ($dmp-create, $dmp-close, …) ------------------------------

    async def check_operation(self, operation: str, rtype: str, pid: str | None) -> None:
        """Who may run a lifecycle operation on patient ``pid`` (None: a DMP not created yet).

        Opening: any professional who is not an excluded actor (a pharmacy too), or the
        patient for themself. Reopening: a professional whom the patient has not blocked (at
        the patient's request, in person). Everything else — access management, closing,
        destruction — belongs to the record's holders: the patient or a legal representative.
        """
        kind = self.caller.kind
        if kind == "internal":
            return
        if kind == "system":
            raise Forbidden("System clients do not run DMP lifecycle operations.")
        if self.excluded:
            raise Forbidden(f"Access refused: {Relation.EXCLUDED.value}.")
        if operation == "purge":
            raise Forbidden("The retention purge is an internal job.")
        if operation == "dmp-create":
            if kind == "practitioner" or (kind == "patient" and pid == self.caller.patient):
                return
            raise Forbidden("A DMP is opened by a professional or by the patient themself.")
        assert pid is not None
        if operation == "dmp-access-attested":
            # A grant the patient gave in person, recorded by the professional it names.
            if kind != "practitioner":
                raise Forbidden("Only a professional attests a grant the patient gave in person.")
            await self.prepare({pid})
            relation = self.relations.get(pid, Relation.NOT_AUTHORISED)
            if relation in (Relation.BLOCKED, Relation.CLOSED, Relation.EXCLUDED):
                raise Forbidden(f"Access to this patient's record is refused: {relation.value}.")
            return
        if operation == "dmp-reopen":
            if kind != "practitioner":
                raise Forbidden("A closed DMP is reopened by a professional, at the patient's request.")
            _, facts = await asyncio.gather(self._load_roles(), self._facts({pid}))
            relation = professional_relation(
                self.caller,
                facts.patients.get(pid),
                facts.consents.get(pid, []),
                "open",  # judged as if open: the patient's blocks still hold
                self.matrix,
                keys=self.keys,
                person=self.person,
            )
            if relation in (Relation.BLOCKED, Relation.EXCLUDED):
                raise Forbidden(f"Access to this patient's record is refused: {relation.value}.")
            return
        await self.prepare({pid})
        if self.relations.get(pid, Relation.NOT_AUTHORISED) not in HOLDER_RELATIONS:
            raise Forbidden(f"Only the patient or a legal representative may run ${operation}.")

    # -- writes -------------------------------------------------------------------------

    async def check_write(
        self,
        rtype: str,
        action: WriteAction,
        new: Mapping[str, Any] | None,
        old: Mapping[str, Any] | None,
        *,
        planned: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        kind = self.caller.kind
        if kind == "internal":
            return
        if rtype in DIRECTORY_TYPES:
            if kind != "system":
                raise Forbidden(f"Only directory systems write {rtype} resources.")
            return
        if kind == "system":
            raise Forbidden("System clients write the directory only.")
        if self.excluded:
            raise Forbidden(f"Access refused: {Relation.EXCLUDED.value}.")
        doc = new if new is not None else old
        assert doc is not None
        pid = doc.get("_p_patient")
        if old is not None and new is not None and old.get("_p_patient") != pid:
            raise Forbidden("A resource cannot be moved to another patient's record.")
        if rtype == "Patient":
            await self._check_identity_write(action, pid, new, old)
            return
        if rtype == "Binary":
            await self._check_binary_write(new, old, planned or {})
            return
        if not isinstance(pid, str):
            raise Forbidden(f"This {rtype} does not designate the patient it belongs to.")
        await self.prepare({pid})
        relation = self.relations.get(pid, Relation.NOT_AUTHORISED)
        if rtype == "DocumentReference" and new is not None:
            await self._check_attachments(new, planned or {})
        if kind in ("patient", "related-person"):
            self._check_own_write(rtype, action, relation, new, old)
        else:
            self._check_professional_write(rtype, action, relation, new, old)

    async def _check_identity_write(
        self,
        action: WriteAction,
        pid: Any,
        new: Mapping[str, Any] | None,
        old: Mapping[str, Any] | None,
    ) -> None:
        if action == "delete":
            raise Forbidden("A DMP is destroyed by its own operation, never by a delete.")
        if action == "create":
            # One DMP per INS is decided by the operation's INS claim, which a plain create skips.
            raise Forbidden("A DMP is opened with Patient/$dmp-create.")
        if self.caller.kind not in ("patient", "related-person") or pid != self.caller.patient:
            raise Forbidden("Only the patient (or a legal representative) updates their identity.")
        await self.prepare({pid})
        if self.relations.get(pid, Relation.NOT_AUTHORISED) not in HOLDER_RELATIONS:
            raise Forbidden("Only the patient (or a legal representative) updates their identity.")
        if _ins(new) != _ins(old):
            raise Forbidden("The INS is the record's key: it does not change by an update.")

    def _check_own_write(
        self,
        rtype: str,
        action: WriteAction,
        relation: Relation,
        new: Mapping[str, Any] | None,
        old: Mapping[str, Any] | None,
    ) -> None:
        if not relation.grants_access:
            raise Forbidden(f"Access to this patient's record is refused: {relation.value}.")
        if rtype in ("Consent", "RelatedPerson"):
            return
        own = f"Patient/{self.caller.patient}"
        if rtype == "List":
            if old is not None and own not in (old.get("_p_authors") or ()):
                raise Forbidden("Patients change only the submission sets they made.")
            return
        if rtype not in DOCUMENT_LIKE:
            raise Forbidden(f"Patients do not write {rtype} resources.")
        if new is not None and INVISIBLE_PATIENT in set(_labels(new)) - set(_labels(old or {})):
            raise Forbidden("Only a document's author hides it from the patient.")
        if action == "create":
            if not self._personal(new):
                raise Forbidden("Patients add documents only to their personal space.")
            return
        if self._personal(old) and (new is None or self._personal(new)):
            return  # the patient's own space: theirs to change or delete
        if action == "delete" or new is None or old is None:
            raise Forbidden("Patients delete only the documents of their personal space.")
        changed = set(_labels(new)) ^ set(_labels(old))
        if changed - {MASKED} or _content(new) != _content(old):
            raise Forbidden("Patients may only mask or unmask a professional's document.")

    def _personal(self, doc: Mapping[str, Any] | None) -> bool:
        keys = _keys(doc)
        return bool(keys) and keys[0] in self.matrix.patient_write

    def _check_professional_write(
        self,
        rtype: str,
        action: WriteAction,
        relation: Relation,
        new: Mapping[str, Any] | None,
        old: Mapping[str, Any] | None,
    ) -> None:
        if relation not in (Relation.GP, Relation.AUTHORISED, Relation.EMERGENCY):
            raise Forbidden(f"Access to this patient's record is refused: {relation.value}.")
        if rtype not in DOCUMENT_LIKE and rtype != "List":
            raise Forbidden(f"Only the patient writes {rtype} resources.")
        if old is not None and not set(old.get("_p_authors") or ()) & self.person:
            raise Forbidden(f"Only the author of this {rtype} changes or deletes it.")
        if rtype == "List" or new is None:
            return
        if not set(new.get("_p_authors") or ()) & self.person:
            raise Forbidden(f"A professional writes the {rtype} resources they author.")
        if not self._may_write(_keys(new)):
            raise Forbidden(f"The access matrix does not let this profession write this {rtype}.")
        before, after = set(_labels(old or {})), set(_labels(new))
        if MASKED in before ^ after:
            raise Forbidden("Only the patient masks or unmasks a document.")
        if old is not None and INVISIBLE_PATIENT in after - before:
            raise Forbidden("A document is hidden from the patient at its creation only.")

    def _may_write(self, keys: list[str]) -> bool:
        """Its section is writable, or every one of its type codes is."""
        allowed = self.rule.write if self.rule else frozenset()
        if not keys:
            return False
        section, types = keys[0], keys[1:]
        return section in allowed or (bool(types) and all(t in allowed for t in types))

    async def _check_attachments(
        self, new: Mapping[str, Any], planned: Mapping[str, Mapping[str, Any]]
    ) -> None:
        """A document may not point at the content of another document."""
        for binary_id in new.get("_p_binaries") or ():
            content = planned.get(f"Binary/{binary_id}") or {}
            if content.get("_fresh") or content.get("_p_document") == new.get("_rid"):
                # Written in this transaction as this document's content: either made up by the
                # server (nothing can own it yet), or its own check refuses a change of owner.
                continue
            found = await self.store.find(
                "Binary", {"_id": binary_id}, limit=1, projection={"_p_document": 1}
            )
            owner = found[0].get("_p_document") if found else None
            if owner is not None and owner != new.get("_rid"):
                raise Forbidden(f"Binary/{binary_id} is the content of another document.")

    async def _check_binary_write(
        self,
        new: Mapping[str, Any] | None,
        old: Mapping[str, Any] | None,
        planned: Mapping[str, Mapping[str, Any]],
    ) -> None:
        """Only who may write its DocumentReference writes a Binary (named by securityContext)."""
        owner_id = (new if new is not None else old or {}).get("_p_document")
        if old is not None and new is not None and old.get("_p_document") != owner_id:
            raise Forbidden("A Binary cannot change the document it belongs to.")
        refusal = Forbidden(
            "A Binary is written by whoever may write the DocumentReference that its "
            "securityContext names and that lists it."
        )
        if not isinstance(owner_id, str):
            raise refusal
        binary_id = (new if new is not None else old or {}).get("_rid")
        companion = planned.get(f"DocumentReference/{owner_id}")
        found = (
            []  # its id was made up by the server in this transaction: nothing is stored under it
            if companion is not None and companion.get("_fresh")
            else await self.store.find("DocumentReference", {"_id": owner_id, "_deleted": False}, limit=1)
        )
        if companion is not None:
            # The document is written in the same transaction (its own write check ran first),
            # but writing a document is not writing its content: a patient may mask a
            # professional's document, never replace its bytes. The content rule applies to the
            # document as planned and as stored.
            if binary_id not in (companion.get("_p_binaries") or ()):
                raise refusal
            if not all(self._writes_content_of(owner) for owner in [companion, *found]):
                raise refusal
            return
        if not found:
            raise refusal
        owner = found[0]
        pid = owner.get("_p_patient")
        if binary_id not in (owner.get("_p_binaries") or ()) or not isinstance(pid, str):
            raise refusal
        await self.prepare({pid})
        visible = await admits(self.store, "DocumentReference", owner, self.scope("DocumentReference"))
        if not visible or not self._writes_content_of(owner):
            raise refusal

    def _writes_content_of(self, owner: Mapping[str, Any]) -> bool:
        """Patients write the content of their personal space; professionals, of what they author."""
        if self.caller.kind in ("patient", "related-person"):
            return self._personal(owner)
        return bool(set(owner.get("_p_authors") or ()) & self.person)


def _ins(doc: Mapping[str, Any] | None) -> list[str]:
    """The INS identifiers (``system|value``) of a stored Patient document."""
    return sorted(patient_ins_keys((doc or {}).get("resource")))


def _keys(doc: Mapping[str, Any] | None) -> list[str]:
    return list((doc or {}).get("_p_keys") or ())


def _labels(doc: Mapping[str, Any]) -> list[str]:
    labels = doc.get("_p_labels")
    if labels is None and isinstance(doc.get("resource"), dict):
        return labels_of(doc["resource"])
    return list(labels or ())


def _content(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A document's resource without its labels and server-maintained meta."""
    resource = dict(doc.get("resource") or {})
    resource.pop("securityLabel", None)
    meta = dict(resource.pop("meta", None) or {})
    for key in ("versionId", "lastUpdated", "security"):
        meta.pop(key, None)
    if meta:
        resource["meta"] = meta
    return resource


__all__ = ["DmpPolicy", "NotFound"]
