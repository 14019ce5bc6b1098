"""The DMP access policy: the one place that decides who sees and writes what.

Reads: ``scope(rtype)`` is a MongoDB filter combined with *every* query (read, search, count,
include, history, chains), so a hidden document is simply absent — from pages and totals
alike. ``explain_hidden`` turns a patient-level refusal into a 403. Writes: ``check_write``.
See the README's access table; the rules' data lives in ``profiles/access-matrix.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..auth.caller import Caller
from ..errors import Forbidden, NotFound
from ..storage.store import ResourceStore
from .base import Interaction, WriteAction
from .fields import labels_of
from .matrix import AccessMatrix
from .relations import (
    AUTHOR_KEEPS_ACCESS,
    Relation,
    caller_keys,
    person_keys,
    professional_relation,
)

DIRECTORY_TYPES = frozenset({"Practitioner", "PractitionerRole", "Organization"})
PATIENT_DATA_TYPES = frozenset({"Patient", "DocumentReference", "List", "Consent", "AuditEvent", "Binary"})
MASKED = "MASQUE_PS"
INVISIBLE_PATIENT = "INVISIBLE_PATIENT"
INVISIBLE_REPRESENTATIVES = "INVISIBLE_REPRESENTANTS_LEGAUX"
SECRET_CONNECTION = "CONNEXION_SECRETE"  # on audit events of a minor's secret connection
RECORDS = "dmp_record"  # one document per patient whose DMP is not simply open
_NOTHING: dict[str, Any] = {"_id": {"$in": []}}
_SCOPE_CONTEXT = {
    "patient": "patient",
    "related-person": "patient",
    "practitioner": "user",
    "system": "system",
}


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
        self._closed: set[str] = set()

    # -- scopes (SMART) -----------------------------------------------------------------

    def require(self, rtype: str, interaction: Interaction) -> None:
        context = _SCOPE_CONTEXT.get(self.caller.kind)
        if context is None or not self.caller.scopes.allows(context, rtype, interaction):
            raise Forbidden(
                f"The token's scopes do not allow '{interaction}' on {rtype}.",
                code="forbidden",
                headers={"WWW-Authenticate": 'Bearer realm="dmp-fhir", error="insufficient_scope"'},
            )

    # -- relations to patients ----------------------------------------------------------

    async def prepare(self, focus_patients: set[str] | None = None) -> None:
        """Relations to ``focus_patients`` only (a read, a search naming its patients), or —
        without focus — to every patient this caller may have a relation with."""
        if self.caller.kind in ("patient", "related-person"):
            for pid in (focus_patients or set()) | ({self.caller.patient} if self.caller.patient else set()):
                if pid not in self.relations:
                    self.relations[pid] = await self._own_relation(pid)
            return
        if self.caller.kind != "practitioner":
            return
        if focus_patients is not None:
            await self._relate(set(focus_patients) - set(self.relations))
            return
        if self._complete:
            return
        candidates = await self._candidate_patients()
        self._closed = {
            d["_id"] for d in await self.store.find(RECORDS, {"status": "closed"}, projection={"_id": 1})
        }
        await self._relate(candidates - set(self.relations))
        self._complete = True

    async def _candidate_patients(self) -> set[str]:
        """Patients this professional may have a relation with: whose GP they are, or whose
        consents name them (permit or deny)."""
        if not self.keys:
            return set()
        keys = sorted(self.keys)
        patients = await self.store.find(
            "Patient", {"_p_gp": {"$in": sorted(self.person)}, "_deleted": False}, projection={"_id": 1}
        )
        consents = await self.store.find(
            "Consent", {"_p_actors": {"$in": keys}, "_deleted": False}, projection={"_p_patient": 1}
        )
        out = {d["_id"] for d in patients}
        out |= {d["_p_patient"] for d in consents if d.get("_p_patient")}
        return out

    async def _relate(self, patients: set[str]) -> None:
        if not patients:
            return
        ids = sorted(patients)
        docs = {d["_id"]: d for d in await self.store.find("Patient", {"_id": _in(ids), "_deleted": False})}
        consents: dict[str, list[dict[str, Any]]] = {}
        for doc in await self.store.find("Consent", {"_p_patient": _in(ids), "_deleted": False}):
            consents.setdefault(doc["_p_patient"], []).append(doc["resource"])
        statuses = {
            d["_id"]: d.get("status", "open") for d in await self.store.find(RECORDS, {"_id": _in(ids)})
        }
        for pid in ids:
            if pid not in docs:
                self.relations[pid] = Relation.NOT_AUTHORISED
                continue
            self.relations[pid] = professional_relation(
                self.caller,
                docs[pid],
                consents.get(pid, []),
                statuses.get(pid, "open"),
                self.matrix,
            )

    async def _own_relation(self, pid: str) -> Relation:
        if pid != self.caller.patient:
            return Relation.NOT_AUTHORISED
        return Relation.SELF if self.caller.kind == "patient" else Relation.REPRESENTATIVE

    def _granted(self, *relations: Relation) -> list[str]:
        return sorted(p for p, r in self.relations.items() if r in relations)

    # -- read filters -------------------------------------------------------------------

    def scope(self, rtype: str) -> Mapping[str, Any] | None:
        kind = self.caller.kind
        if kind == "internal":
            return {}
        if rtype in DIRECTORY_TYPES:
            return {}
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
            return {"_id": pid}
        hidden = [INVISIBLE_PATIENT]
        if self.caller.kind == "related-person":
            hidden += [INVISIBLE_REPRESENTATIVES, SECRET_CONNECTION]
        if rtype in ("DocumentReference", "AuditEvent"):
            # An event about a hidden document is hidden like the document.
            return {"_p_patient": pid, "_p_labels": {"$nin": hidden}}
        if rtype in ("List", "Consent"):
            return {"_p_patient": pid}
        return None

    def _professional_scope(self, rtype: str) -> Mapping[str, Any] | None:
        granted = self._granted(Relation.GP, Relation.AUTHORISED, Relation.EMERGENCY)
        if rtype == "Patient":
            return {"_id": _in(granted)} if granted else None
        if rtype == "List":
            return {"_p_patient": _in(granted)} if granted else None
        if rtype != "DocumentReference":
            return None  # Consents and the audit trail are the patient's own
        groups: list[dict[str, Any]] = []
        gp = self._granted(Relation.GP)
        if gp:
            groups.append({"_p_patient": _in(gp), "_p_keys": {"$in": sorted(self.matrix.gp_read)}})
        matrix_patients = self._granted(Relation.AUTHORISED, Relation.EMERGENCY)
        if matrix_patients and self.rule is not None and self.rule.read:
            groups.append(
                {
                    "_p_patient": _in(matrix_patients),
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
                    authored["_p_patient"] = _in(allowed)
                    groups.append(authored)
        if not groups:
            return None
        return groups[0] if len(groups) == 1 else {"$or": groups}

    async def binary_visible(self, binary: Mapping[str, Any]) -> bool:
        scope = self.scope("DocumentReference")
        if scope is None:
            return False
        query: dict[str, Any] = {"_p_binaries": binary["_rid"], "_deleted": False}
        if binary.get("_p_patient"):
            query["_p_patient"] = binary["_p_patient"]
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

    async def check_focus(self, focus_patients: set[str]) -> None:
        await self.prepare(focus_patients)
        if self.caller.kind == "internal" or len(focus_patients) != 1:
            return
        pid = next(iter(focus_patients))
        relation = self.relations.get(pid, Relation.NOT_AUTHORISED)
        if self.caller.kind in ("patient", "related-person", "practitioner") and not relation.grants_access:
            if relation in AUTHOR_KEEPS_ACCESS and await self._authored_for(pid):
                return  # not authorised, but may still find the documents they authored
            raise Forbidden(f"Access to this patient's record is refused: {relation.value}.")

    async def _authored_for(self, pid: str) -> bool:
        if not self.person:
            return False
        docs = await self.store.find(
            "DocumentReference",
            {"_p_patient": pid, "_deleted": False, "_p_authors": {"$in": sorted(self.person)}},
            limit=1,
            projection={"_id": 1},
        )
        return bool(docs)

    # -- writes -------------------------------------------------------------------------

    async def check_write(
        self,
        rtype: str,
        action: WriteAction,
        new: Mapping[str, Any] | None,
        old: Mapping[str, Any] | None,
    ) -> None:
        kind = self.caller.kind
        if kind == "internal":
            return
        if rtype in DIRECTORY_TYPES:
            if kind != "system":
                raise Forbidden(f"Only directory systems write {rtype} resources.")
            return
        doc = new if new is not None else old
        assert doc is not None
        pid = doc.get("_p_patient")
        if old is not None and new is not None and old.get("_p_patient") != pid:
            raise Forbidden("A resource cannot be moved to another patient's record.")
        if rtype == "Patient":
            await self._check_patient_write(action, pid)
            return
        if not isinstance(pid, str):
            raise Forbidden(f"This {rtype} does not designate the patient it belongs to.", code="forbidden")
        if kind == "system":
            raise Forbidden("System clients do not write patient data.")
        await self.prepare({pid})
        relation = self.relations.get(pid, Relation.NOT_AUTHORISED)
        if kind in ("patient", "related-person"):
            await self._check_own_write(rtype, action, relation, new, old)
        else:
            await self._check_professional_write(rtype, action, relation, new, old)

    async def _check_patient_write(self, action: WriteAction, pid: Any) -> None:
        kind = self.caller.kind
        if action == "delete":
            raise Forbidden("A DMP is destroyed by the $dmp-destroy operation, not a delete.")
        if kind == "system" or (kind == "practitioner" and action == "create"):
            return
        if kind in ("patient", "related-person") and pid == self.caller.patient and action == "update":
            return
        raise Forbidden("Only the patient (or a legal representative) updates their identity.")

    async def _check_own_write(
        self,
        rtype: str,
        action: WriteAction,
        relation: Relation,
        new: Mapping[str, Any] | None,
        old: Mapping[str, Any] | None,
    ) -> None:
        if not relation.grants_access:
            raise Forbidden(f"Access to this patient's record is refused: {relation.value}.")
        if rtype in ("Consent", "List", "Binary"):
            return
        if rtype != "DocumentReference":
            raise Forbidden(f"Patients do not write {rtype} resources.")
        personal = any(k in self.matrix.patient_write for k in _keys(new or old))
        if action == "create":
            assert new is not None
            if not personal:
                raise Forbidden("Patients add documents only to their personal space.")
            if INVISIBLE_PATIENT in _labels(new):
                raise Forbidden("Only a document's author hides it from the patient.")
            return
        assert old is not None
        if action == "delete":
            if not personal:
                raise Forbidden("Patients delete only the documents of their personal space.")
            return
        assert new is not None
        changed = set(_labels(new)) ^ set(_labels(old))
        if changed - {MASKED} or (not personal and _content(new) != _content(old)):
            raise Forbidden("Patients may only mask or unmask a professional's document.")

    async def _check_professional_write(
        self,
        rtype: str,
        action: WriteAction,
        relation: Relation,
        new: Mapping[str, Any] | None,
        old: Mapping[str, Any] | None,
    ) -> None:
        if relation not in (Relation.GP, Relation.AUTHORISED, Relation.EMERGENCY):
            raise Forbidden(f"Access to this patient's record is refused: {relation.value}.")
        if rtype in ("List", "Binary"):
            return
        if rtype != "DocumentReference":
            raise Forbidden(f"Only the patient writes {rtype} resources.")
        authors = set((new or old or {}).get("_p_authors") or ())
        if action == "create":
            assert new is not None
            allowed = self.rule.write if self.rule else frozenset()
            if not set(_keys(new)) & allowed:
                raise Forbidden("The access matrix does not let this profession add this type of document.")
            if MASKED in _labels(new):
                raise Forbidden("Only the patient masks a document.")
            if INVISIBLE_PATIENT in _labels(new) and not authors & self.person:
                raise Forbidden("Only the document's author hides it from the patient.")
            return
        assert old is not None
        if not set(old.get("_p_authors") or ()) & self.person:
            raise Forbidden("Only the document's author changes or deletes it.")
        if action == "delete" or new is None:
            return
        before, after = set(_labels(old)), set(_labels(new))
        if MASKED in before ^ after:
            raise Forbidden("Only the patient masks or unmasks a document.")
        if INVISIBLE_PATIENT in after - before:
            raise Forbidden("A document is hidden from the patient at its creation only.")


def _in(values: list[str]) -> Any:
    return values[0] if len(values) == 1 else {"$in": values}


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
