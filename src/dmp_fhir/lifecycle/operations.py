"""The life of a DMP: the ``$dmp-*`` operations and the retention purge.

They run behind the repository's door — its caller's policy (``check_operation``), its audit
record, its store — and add what a record's life needs: the INS claim (one DMP per INS), the
record status, access Consents, destruction and retention. See the README, "The life of a DMP".
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from typing import Any

from ..audit import AuditRecord
from ..errors import BadRequest, Conflict, Forbidden, Gone, NotFound, PreconditionFailed, Unprocessable
from ..policy.dmp import DIRECTORY_TYPES
from ..policy.fields import actor_keys, rpps_keys
from ..registry import CLINICAL_TYPES, RESOURCE_TYPES
from ..repository import Repository, WriteResult, check_id
from ..search.dates import parse_range
from ..storage import StoredVersion
from ..storage.records import CREATED, DmpRecords
from ..storage.store import format_instant, now_utc
from . import consents as dmp_consents
from .identity import build_patient, ins_key, patient_ins_keys, with_identifier
from .parameters import OperationParameters

#: Resource types that belong to one patient: destruction removes them (never AuditEvent).
PATIENT_OWNED = tuple(t for t in RESOURCE_TYPES if t not in DIRECTORY_TYPES and t != "AuditEvent")


def add_years(moment: datetime, years: int) -> datetime:
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year + years, day=28)


class LifecycleOperations:
    """The ``$dmp-*`` operations of one caller (``Repository.lifecycle``)."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo

    @asynccontextmanager
    async def _operation(self, name: str, rtype: str) -> AsyncIterator[AuditRecord]:
        async with self.repo._audited("operation", rtype) as record:
            record.operation = name
            yield record

    def _note_patient(self, pid: str) -> None:
        self.repo._note("Patient", {"_rid": pid, "_p_patient": pid}, version=False)

    async def _write_authorised(
        self,
        rtype: str,
        rid: str,
        resource: dict[str, Any],
        *,
        create_only: bool = False,
        if_match: int | None = None,
    ) -> StoredVersion:
        """A write inside an operation the policy already allowed (``check_operation``): the
        per-resource write rules (e.g. "only the patient writes Consents") do not apply."""
        resource = self.repo.validated({**resource, "id": rid}, rtype)
        fields = await self.repo._fields(rtype, resource)
        stored = await self.repo.store.write(
            rtype, rid, resource, fields, create_only=create_only, if_match=if_match
        )
        self.repo._note(rtype, {"_rid": rid, "_v": stored.version, **fields})
        await self.repo._refresh_dependents(rtype, rid)
        return stored

    async def _live_patient(self, pid: str) -> dict[str, Any]:
        doc = await self.repo.store.read_doc("Patient", {"_id": check_id(pid)})
        if doc is None or doc.get("_deleted"):
            raise NotFound(f"Patient/{pid} is not known.")
        return doc

    async def create_dmp(self, body: Any) -> WriteResult:
        """``POST Patient/$dmp-create``: one DMP per INS, decided by the ``dmp_ins`` claim.

        1. validate everything (identity, consent, representatives) — nothing is written yet;
        2. claim the INS: insert ``{_id: INS, patient: pid, state: pending}``; the unique
           ``_id`` lets exactly one concurrent creation win;
        3. write Patient/pid (``create_only``), the representatives and the creation Consent
           (fixed ids ``<pid>-rep-<n>``, ``<pid>-creation``: a repeat finds them and moves on);
        4. open the record (``dmp_record``) and settle the claim (``state: created``).

        A claim already ``created`` answers 409 naming the record (``Content-Location``). A
        claim still ``pending`` is a creation in progress or one that crashed between 2 and 4:
        this call adopts it — same pid — and completes the missing steps; whoever wrote the
        Patient answers 201, the other 409. So a crash never locks the INS: the next attempt
        converges on one complete record. A refusal after step 2 (before the Patient exists)
        releases the claim; a ``created`` claim whose Patient was destroyed is released too.
        """
        params = OperationParameters(body, "dmp-create")
        async with self._operation("dmp-create", "Patient") as record:
            self.repo.policy.require("Patient", "c")
            caller = self.repo.policy.caller
            ins = params.value("ins", "Identifier", required=True)
            key = ins_key(ins)
            patient = build_patient(
                ins=ins,
                birth_names=params.values("birthName", "String"),
                given_names=params.values("given", "String"),
                birth_date=params.value("birthDate", "Date", required=True),
                gender=params.value("gender", "Code", required=True),
                birthplace=params.value("birthPlace", "Code", required=True),
                extra=params.value("patient", "resource"),
            )
            if params.value("informationLeafletGiven", "Boolean", required=True) is not True:
                raise Unprocessable(
                    "The patient must have received the information leaflet before consenting.",
                    expression=("Parameters.parameter.where(name='informationLeafletGiven')",),
                )
            collector = params.value("consentCollector", "Reference") or (
                {"reference": caller.subject} if "/" in caller.subject else {"display": caller.subject}
            )
            moment = params.value("consentDate", "DateTime") or format_instant(now_utc())
            representatives = params.values("legalRepresentative", "resource")
            if caller.kind == "patient" and caller.patient is None:
                raise BadRequest("The token names no patient.", code="required")
            pid = caller.patient if caller.kind == "patient" and caller.patient else str(uuid.uuid4())
            await self.repo.policy.check_operation(
                "dmp-create", "Patient", pid if caller.kind == "patient" else None
            )
            self.repo.validated({**patient, "id": pid}, "Patient")
            for rp in representatives:
                if not isinstance(rp, dict) or rp.get("resourceType") != "RelatedPerson":
                    raise BadRequest("legalRepresentative must be a RelatedPerson.", code="structure")
                self.repo.validated({**rp, "patient": {"reference": f"Patient/{pid}"}}, "RelatedPerson")
            consent = dmp_consents.creation_consent(pid, moment, collector, True)
            self.repo.validated(consent, "Consent")
            creator = self._creator_grant(pid, moment)
            if creator is not None:
                self.repo.validated(creator, "Consent")

            records = DmpRecords(self.repo.store.database)
            pid = await self._claim_ins(records, key, pid)
            self._note_patient(pid)
            record.touched.clear()
            won = False
            try:
                try:
                    await self._write_authorised("Patient", pid, patient, create_only=True)
                    won = True
                except Conflict:
                    # Another attempt wrote it: complete what is missing, then answer 409 — but
                    # only if that Patient is this INS's. A patient whose record exists (their
                    # token fixes the id) must not attach a new INS, representatives or consent.
                    existing = await self.repo.store.read("Patient", pid)
                    if existing is None or existing.deleted or key not in patient_ins_keys(existing.resource):
                        await records.release(key, pid)
                        raise Conflict(
                            "This patient already has a DMP (under another identity).", code="duplicate"
                        ) from None
                for n, rp in enumerate(representatives, start=1):
                    rp = with_identifier({**rp, "patient": {"reference": f"Patient/{pid}"}}, f"{pid}-rep-{n}")
                    await self._create_if_absent("RelatedPerson", f"{pid}-rep-{n}", rp)
                consent = dmp_consents.creation_consent(pid, moment, collector, True)
                await self._create_if_absent("Consent", f"{pid}-creation", consent)
                if creator is not None:
                    await self._create_if_absent("Consent", f"{pid}-creator", creator)
                if won or await records.get(pid) is None:
                    await records.put(pid, {"status": "open", "created_at": now_utc()})
                await records.settle(key)
            except BaseException:
                if await self.repo.store.read_doc("Patient", {"_id": pid}) is None:
                    await records.release(key, pid)
                raise
            stored = await self.repo.store.read("Patient", pid)
            assert stored is not None
            if not won:
                raise self._duplicate(pid)
            return WriteResult(stored, created=True)

    def _creator_grant(self, pid: str, moment: str) -> dict[str, Any] | None:
        """The professional who opens a DMP is authorised by that creation: a grant naming
        them, revocable by the patient like any other (None when the patient opens it)."""
        caller = self.repo.policy.caller
        if caller.kind != "practitioner":
            return None
        me = {"reference": caller.subject}
        grant = dmp_consents.access_consent(pid, moment, "grant", me)
        return dmp_consents.attested(grant, me, "dmp-create")

    async def _claim_ins(self, records: DmpRecords, key: str, pid: str) -> str:
        """The patient id that owns the INS claim (see ``create_dmp``)."""
        for _ in range(5):
            existing = await records.claim(key, pid, now_utc())
            if existing is None:
                return pid
            owner = str(existing["patient"])
            if existing.get("state") == CREATED:
                if await self.repo.store.read_doc("Patient", {"_id": owner}) is None:
                    await records.release(key, owner)  # destroyed: the INS is free again
                    continue
                raise self._duplicate(owner)
            if self.repo.policy.caller.kind == "patient" and owner != pid:
                raise self._duplicate(owner)
            return owner  # pending: adopt it
        raise Conflict("The INS is being claimed concurrently; try again.", code="lock-error")

    def _duplicate(self, pid: str) -> Conflict:
        self._note_patient(pid)
        return Conflict(
            f"A DMP already exists for this INS: Patient/{pid}.",
            code="duplicate",
            headers={"Content-Location": f"{self.repo.settings.base_url}/Patient/{pid}"},
        )

    async def _create_if_absent(self, rtype: str, rid: str, resource: dict[str, Any]) -> None:
        with suppress(Conflict):
            await self._write_authorised(rtype, rid, resource, create_only=True)

    async def manage_access(self, pid: str, body: Any) -> list[StoredVersion]:
        """``POST Patient/[id]/$dmp-access``: each decision is a Consent version (see
        ``lifecycle/consents.py`` for the shapes); returns the versions written."""
        params = OperationParameters(body, "dmp-access")
        async with self._operation("dmp-access", "Patient") as record:
            self.repo.policy.require("Consent", "c")
            self.repo.policy.require("Consent", "u")
            check_id(pid)
            self._note_patient(pid)
            action = params.value("action", "Code", required=True)
            if action not in dmp_consents.ACTIONS:
                raise BadRequest(
                    f"$dmp-access: action must be one of {', '.join(dmp_consents.ACTIONS)}.", code="value"
                )
            attestation = params.value("attestation", "Code")
            if self.repo.policy.caller.kind == "practitioner":
                return await self._attested_grant(pid, action, attestation, params, record)
            actor: dict[str, Any] | None = None
            if action in ("grant", "revoke", "block", "unblock"):
                actor = dmp_consents.check_actor(params.value("actor", "Reference", required=True))
            await self.repo.policy.check_operation("dmp-access", "Patient", pid)
            await self._live_patient(pid)
            moment = format_instant(now_utc())
            if action in ("grant", "block", "oppose-emergency"):
                consent = dmp_consents.access_consent(pid, moment, action, actor)
                return [await self._write_authorised("Consent", str(uuid.uuid4()), consent, create_only=True)]
            keys = set(await actor_keys(actor, {}, self.repo._resolve)) if actor else set()
            written = []
            for found in await self.repo.store.find("Consent", {"_p_patient": pid, "_deleted": False}):
                doc: dict[str, Any] | None = found
                for _attempt in range(5):  # a concurrent change of the same Consent: judge it again
                    if doc is None or doc.get("_deleted"):
                        break
                    resource = doc["resource"]
                    if not dmp_consents.ends(resource, action, keys, list(doc.get("_p_actors") or ())):
                        break
                    ended = {**resource, "status": "inactive"}
                    try:
                        written.append(
                            await self._write_authorised(
                                "Consent", doc["_id"], ended, if_match=int(doc["_v"])
                            )
                        )
                        break
                    except PreconditionFailed:
                        doc = await self.repo.store.read_doc("Consent", {"_id": doc["_id"]})
                else:
                    raise Conflict("The patient's Consents keep changing; try again.", code="lock-error")
            return written

    async def _attested_grant(
        self, pid: str, action: str, attestation: Any, params: OperationParameters, record: AuditRecord
    ) -> list[StoredVersion]:
        """A professional records the access the patient gave them in person, during the visit
        ("vous autorisez, au gré de vos rendez-vous, les professionnels… qui vous prennent en
        charge"): a grant naming that professional only, never when the patient blocked them
        or their establishment. The Consent and the AuditEvent carry the attestation."""
        caller = self.repo.policy.caller
        if action != "grant":
            raise Forbidden(
                "A professional records only the access the patient gives them in person "
                "(action 'grant'); the patient manages everything else."
            )
        if attestation != dmp_consents.PATIENT_PRESENT:
            raise Forbidden(
                "A professional records a grant only by attesting that the patient agreed in "
                f"person: attestation = '{dmp_consents.PATIENT_PRESENT}'."
            )
        me = {"reference": caller.subject}
        given = params.value("actor", "Reference")
        if given is not None:
            actor = dmp_consents.check_actor(given)
            names_me = actor.get("reference") == caller.subject or (
                caller.rpps is not None
                and set(await actor_keys(actor, {}, self.repo._resolve)) & set(rpps_keys(caller.rpps))
            )
            if not names_me:
                raise Forbidden("A professional records a grant for themself only, never for another.")
        await self.repo.policy.check_operation("dmp-access-attested", "Patient", pid)
        await self._live_patient(pid)
        record.attestation = attestation
        moment = format_instant(now_utc())
        consent = dmp_consents.attested(
            dmp_consents.access_consent(pid, moment, "grant", me), me, attestation
        )
        return [await self._write_authorised("Consent", str(uuid.uuid4()), consent, create_only=True)]

    async def close_dmp(self, pid: str) -> dict[str, Any]:
        """``POST Patient/[id]/$dmp-close``: professionals lose access; the data is kept until
        ``retain_until`` (``retention_closed_years``), when ``dmp-fhir purge`` destroys it."""
        async with self._operation("dmp-close", "Patient"):
            self.repo.policy.require("Patient", "u")
            check_id(pid)
            self._note_patient(pid)
            await self.repo.policy.check_operation("dmp-close", "Patient", pid)
            await self._live_patient(pid)
            records = DmpRecords(self.repo.store.database)
            current = await records.get(pid) or {}
            if current.get("status", "open") != "open":
                raise Conflict(f"The DMP of Patient/{pid} is not open.", code="business-rule")
            now = now_utc()
            state = {
                "status": "closed",
                "created_at": current.get("created_at"),
                "closed_at": now,
                "retain_until": add_years(now, self.repo.settings.retention_closed_years),
            }
            await records.put(pid, state)
            return state

    async def reopen_dmp(self, pid: str) -> dict[str, Any]:
        """``POST Patient/[id]/$dmp-reopen``: within the retention period, all data comes back
        (nothing was removed at closure)."""
        async with self._operation("dmp-reopen", "Patient"):
            self.repo.policy.require("Patient", "u")
            check_id(pid)
            self._note_patient(pid)
            await self.repo.policy.check_operation("dmp-reopen", "Patient", pid)
            await self._live_patient(pid)
            records = DmpRecords(self.repo.store.database)
            current = await records.get(pid) or {}
            if current.get("status") != "closed":
                raise Conflict(f"The DMP of Patient/{pid} is not closed.", code="business-rule")
            retain_until = current.get("retain_until")
            now = now_utc()
            if isinstance(retain_until, datetime) and retain_until.astimezone(UTC) <= now:
                raise Gone(f"The retention period of Patient/{pid}'s DMP is over.")
            state = {"status": "open", "created_at": current.get("created_at"), "reopened_at": now}
            await records.put(pid, state)
            return state

    async def destroy_dmp(self, pid: str) -> dict[str, int]:
        """``POST Patient/[id]/$dmp-destroy``: irreversible (see ``_destroy_patient``)."""
        async with self._operation("dmp-destroy", "Patient"):
            self.repo.policy.require("Patient", "d")
            check_id(pid)
            self._note_patient(pid)
            await self.repo.policy.check_operation("dmp-destroy", "Patient", pid)
            await self._live_patient(pid)
            return await self._destroy_patient(pid)

    async def _destroy_patient(self, pid: str) -> dict[str, int]:
        """Remove every version of everything about the patient, then the INS claim, the
        identifier claims and the record. The record is marked ``destroying`` first
        (professionals are refused from then on); the Patient goes last, so a crash midway
        leaves a record that a re-run (or ``dmp-fhir purge``, which finishes ``destroying``
        records) completes. AuditEvents stay: they hold references and codes, never content
        (README, "Destruction")."""
        records = DmpRecords(self.repo.store.database)
        current = await records.get(pid) or {}
        await records.put(pid, {**{k: v for k, v in current.items() if k != "_id"}, "status": "destroying"})
        # A transaction still writing to this record would publish its versions after the
        # purge: finish what is decided, and let a running one end before destroying.
        await self.repo.store.journal.recover()
        for rtype in PATIENT_OWNED:
            if await self.repo.store.find(rtype, {"_p_patient": pid}, history=True, claimed=True, limit=1):
                raise Conflict(
                    "A transaction is writing to this record; the destruction resumes when you try again.",
                    code="lock-error",
                )
        binaries: set[str] = set()
        for history in (False, True):
            for doc in await self.repo.store.find(
                "DocumentReference", {"_p_patient": pid}, history=history, projection={"_p_binaries": 1}
            ):
                binaries.update(doc.get("_p_binaries") or ())
        counts: dict[str, int] = {}
        for rtype in PATIENT_OWNED:
            if rtype != "Patient":
                counts[rtype] = await self.repo.store.purge_patient(rtype, pid)
        for binary_id in sorted(binaries):
            counts["Binary"] = counts.get("Binary", 0) + await self.repo.store.purge("Binary", binary_id)
        await self.repo.store.purge_content(sorted(binaries))
        counts["Patient"] = await self.repo.store.purge_patient("Patient", pid)
        await records.release_patient(pid)
        await self.repo.store.claims.release_patient(pid)
        await records.remove(pid)
        return {k: v for k, v in counts.items() if v}

    async def destroy_document(self, rid: str, rtype: str = "DocumentReference") -> dict[str, int]:
        """``POST DocumentReference/[id]/$dmp-destroy``: one document, all its versions, its
        Binaries and their content; submission sets that listed it are re-labelled. The same
        operation on a structured resource (``Observation/[id]/$dmp-destroy`` …) removes it
        and all its versions."""
        async with self._operation("dmp-destroy", rtype):
            self.repo.policy.require(rtype, "d")
            doc = await self.repo.store.read_doc(rtype, {"_id": check_id(rid)})
            if doc is None:
                raise NotFound(f"{rtype}/{rid} is not known.")
            live = (
                doc
                if not doc.get("_deleted")
                else await self.repo.store.newest_history(rtype, rid, live=True)
            )
            pid = (live or doc).get("_p_patient")
            owner = pid if isinstance(pid, str) else None
            await self.repo.policy.check_operation("dmp-destroy", rtype, owner)
            if live is not None:
                await self.repo._require_visible(rtype, live, f"{rtype}/{rid}")
            if rtype != "DocumentReference":
                counts = {rtype: await self.repo.store.purge(rtype, rid)}
                await self.repo.store.claims.release_resource(rtype, rid)
                return counts
            return await self._destroy_document(rid)

    async def _destroy_document(self, rid: str) -> dict[str, int]:
        binaries: set[str] = set()
        for history in (False, True):
            for doc in await self.repo.store.find(
                "DocumentReference", {"_rid": rid}, history=history, projection={"_p_binaries": 1}
            ):
                binaries.update(doc.get("_p_binaries") or ())
        binaries.update(
            d["_id"]
            for d in await self.repo.store.find("Binary", {"_p_document": rid}, projection={"_id": 1})
        )
        counts = {"DocumentReference": await self.repo.store.purge("DocumentReference", rid), "Binary": 0}
        await self.repo.store.claims.release_resource("DocumentReference", rid)
        for binary_id in sorted(binaries):
            counts["Binary"] += await self.repo.store.purge("Binary", binary_id)
        await self.repo.store.purge_content(sorted(binaries))
        await self.repo._refresh_dependents("DocumentReference", rid)
        return counts

    async def purge_expired(self, now: datetime) -> list[str]:
        """``dmp-fhir purge``: what the retention rules say must go, as of ``now``; one line
        per destruction, each audited. Running it twice removes nothing the second time."""
        await self.repo.policy.check_operation("purge", "Patient", None)
        settings = self.repo.settings
        records = DmpRecords(self.repo.store.database)
        done: list[str] = []

        async def destroy(pid: str, why: str) -> None:
            async with self._operation("purge", "Patient"):
                self._note_patient(pid)
                counts = await self._destroy_patient(pid)
            removed = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "nothing left"
            done.append(f"destroyed the DMP of Patient/{pid} ({why}): {removed}")

        for rec in await records.with_status("destroying"):
            await destroy(str(rec["_id"]), "an interrupted destruction")
        for rec in await records.with_status("closed"):
            until = rec.get("retain_until")
            if isinstance(until, datetime) and until.astimezone(UTC) <= now:
                await destroy(str(rec["_id"]), f"closed, retention ended {until.date().isoformat()}")
        for doc in await self.repo.store.find("Patient", {"_s_deceased": "true", "_deleted": False}):
            death = _instant((doc.get("resource") or {}).get("deceasedDateTime"))
            if death is not None and add_years(death, settings.retention_after_death_years) <= now:
                await destroy(doc["_id"], f"deceased on {death.date().isoformat()}")
        by_patient: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for rtype in ("DocumentReference", *sorted(CLINICAL_TYPES)):
            for doc in await self.repo.store.find(rtype, {"_p_keys": "SANTE_TRAVAIL"}):
                if isinstance(doc.get("_p_patient"), str):
                    by_patient.setdefault(doc["_p_patient"], []).append((rtype, doc))
        for pid, docs in sorted(by_patient.items()):
            last = max(_visit(doc) for _, doc in docs)
            if add_years(last, settings.retention_occupational_years) <= now:
                removed: dict[str, int] = {}
                async with self._operation("purge", "DocumentReference"):
                    self._note_patient(pid)
                    for rtype, doc in docs:
                        if rtype == "DocumentReference":
                            await self._destroy_document(doc["_id"])
                        else:
                            await self.repo.store.purge(rtype, doc["_id"])
                        removed[rtype] = removed.get(rtype, 0) + 1
                counts = ", ".join(f"{k} {v}" for k, v in sorted(removed.items()))
                done.append(
                    f"destroyed the occupational-health section of Patient/{pid} "
                    f"(last visit {last.date().isoformat()}): {counts}"
                )
        return done


def _instant(value: Any) -> datetime | None:
    """The start of a FHIR date/dateTime (None when absent or unreadable)."""
    found = parse_range(value) if isinstance(value, str) else None
    return found[0] if found else None


#: The date of the act a structured resource records (Observation, Immunization, …).
_VISIT_ELEMENTS = ("effectiveDateTime", "occurrenceDateTime", "whenHandedOver", "recordedDate", "issued")


def _visit(doc: dict[str, Any]) -> datetime:
    """When a document's visit took place: context.period.start, else date, else storage time."""
    resource = doc.get("resource") or {}
    period = (resource.get("context") or {}).get("period") or {}
    found = _instant(period.get("start")) or _instant(resource.get("date"))
    for element in _VISIT_ELEMENTS:  # structured data: when the act took place
        found = found or _instant(resource.get(element))
    moment: datetime = found or doc["_lu"]
    return moment.astimezone(UTC)
