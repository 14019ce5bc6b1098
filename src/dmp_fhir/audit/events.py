"""AuditEvent resources in the spirit of IHE BALP (Basic Audit Log Patterns, RESTful events)."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..auth.caller import Caller
from ..storage.store import format_instant

AUDIT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
PROFESSION = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
FINESS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.2"
RPPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
#: The server's operations (``$dmp-close`` …), named in the event's subtype beside ``operation``.
OPERATION_SYSTEM = "https://dmp-fhir.example.org/fhir/CodeSystem/dmp-operation"

#: BALP: the action code of each interaction.
ACTIONS = {
    "create": "C",
    "read": "R",
    "vread": "R",
    "update": "U",
    "patch": "U",
    "delete": "D",
    "search-type": "E",
    "history-instance": "R",
    "history-type": "R",
    "operation": "E",
    "transaction": "E",
    "batch": "E",
    "login": "E",
}
OUTCOME_SUCCESS = "0"
OUTCOME_MINOR_FAILURE = "4"
OUTCOME_SERIOUS_FAILURE = "8"


@dataclass
class AuditRecord:
    """What a repository method did, for whom, and how it ended."""

    interaction: str
    resource_type: str
    caller: Caller | None = None
    outcome: str = OUTCOME_SUCCESS
    outcome_desc: str | None = None
    patients: set[str] = field(default_factory=set)
    entities: list[str] = field(default_factory=list)  # ``Type/id`` or ``Type/id/_history/n``
    query: str | None = None
    #: Visibility labels of the documents touched: the event is hidden exactly like them.
    labels: set[str] = field(default_factory=set)
    #: The event itself is hidden from the legal representatives (a minor's secret connection).
    secret: bool = False
    #: The operation's name (``dmp-close`` …) when ``interaction`` is ``operation``.
    operation: str | None = None
    #: What the professional attested (``patient-present``: an access grant given in person).
    attestation: str | None = None
    #: (patient, ``Type/id[/_history/n]``, hiding labels) of every resource touched.
    touched: list[tuple[str | None, str, frozenset[str]]] = field(default_factory=list)

    def touch(self, patient: str | None, reference: str, labels: frozenset[str]) -> None:
        if patient is not None:
            self.patients.add(patient)
        if all(ref != reference for _, ref, _ in self.touched):
            self.touched.append((patient, reference, labels))

    def split(self) -> list[AuditRecord]:
        """One event per patient and per visibility.

        A patient's trail never shows another patient's resources (nor a query that named
        them), and an event about a document hidden from the patient is hidden on its own,
        without hiding the rest.
        """
        groups: dict[tuple[str | None, frozenset[str]], list[str]] = {}
        for patient, ref, labels in self.touched:
            groups.setdefault((patient, labels | frozenset(self.labels)), []).append(ref)
        for patient in self.patients:
            if not any(key[0] == patient for key in groups):
                groups[(patient, frozenset(self.labels))] = []
        if not groups:
            groups[(None, frozenset(self.labels))] = []
        several = len({p for p, _ in groups if p is not None}) > 1
        records = []
        for (patient, labels), refs in groups.items():
            records.append(
                AuditRecord(
                    interaction=self.interaction,
                    resource_type=self.resource_type,
                    caller=self.caller,
                    outcome=self.outcome,
                    outcome_desc=self.outcome_desc,
                    patients={patient} if patient is not None else set(),
                    entities=refs + [e for e in self.entities if e not in refs and patient is None],
                    query=None if several else self.query,
                    labels=set(labels),
                    secret=self.secret,
                    operation=self.operation,
                    attestation=self.attestation,
                )
            )
        return records


def build_audit_event(record: AuditRecord, *, moment: datetime, source: str) -> dict[str, Any]:
    """The AuditEvent resource for one record."""
    caller = record.caller
    purpose = caller.purpose_of_use if caller else "TREAT"
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(uuid.uuid4()),
        "type": {"system": AUDIT_TYPE, "code": "rest", "display": "Restful Operation"},
        "subtype": [{"system": RESTFUL, "code": record.interaction}]
        + ([{"system": OPERATION_SYSTEM, "code": record.operation}] if record.operation else []),
        "action": ACTIONS.get(record.interaction, "E"),
        "recorded": format_instant(moment),
        "outcome": record.outcome,
        "purposeOfEvent": [{"coding": [{"system": ACT_REASON, "code": purpose}]}],
        "agent": _agents(caller),
        "source": {
            "observer": {"display": source},
            "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
        },
    }
    if record.outcome_desc:
        event["outcomeDesc"] = record.outcome_desc[:1000]
    entities: list[dict[str, Any]] = [
        {
            "what": {"reference": f"Patient/{pid}"},
            "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
            "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
        }
        for pid in sorted(record.patients)
    ]
    if record.attestation:
        for entity in entities:
            entity["detail"] = [{"type": "attestation", "valueString": record.attestation}]
    entities += [
        {
            "what": {"reference": ref},
            "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
        }
        for ref in record.entities[:200]
    ]
    if record.query is not None:
        entities.append(
            {
                "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                "role": {"system": OBJECT_ROLE, "code": "24", "display": "Query"},
                "description": record.resource_type,
                "query": base64.b64encode(record.query.encode()).decode(),
            }
        )
    if entities:
        event["entity"] = entities
    return event


def _agents(caller: Caller | None) -> list[dict[str, Any]]:
    if caller is None:
        return [{"requestor": True, "who": {"display": "unauthenticated"}}]
    user: dict[str, Any] = {
        "requestor": True,
        "who": {"reference": caller.subject}
        if "/" in caller.subject and not caller.subject.startswith("internal:")
        else {"display": caller.subject},
        "purposeOfUse": [{"coding": [{"system": ACT_REASON, "code": caller.purpose_of_use}]}],
    }
    if caller.rpps:
        user["who"]["identifier"] = {"system": RPPS_SYSTEM, "value": caller.rpps}
    if caller.profession:
        user["role"] = [{"coding": [{"system": PROFESSION, "code": caller.profession}]}]
    if caller.token_id:
        user["altId"] = caller.token_id
    agents = [user]
    if caller.via_system is not None:
        # Authentification indirecte: the establishment system made the request and declared
        # the professional above; it is named with the establishment it authenticated as.
        system: dict[str, Any] = {"display": caller.via_system}
        if caller.finess:
            system["identifier"] = {"system": FINESS_SYSTEM, "value": caller.finess}
        agents.append(
            {
                "type": {"coding": [{"system": DCM, "code": "110150", "display": "Application"}]},
                "requestor": True,
                "who": system,
                "name": f"establishment system of {caller.organization}",
            }
        )
    elif caller.client_id:
        agents.append(
            {
                "type": {"coding": [{"system": DCM, "code": "110150", "display": "Application"}]},
                "requestor": False,
                "who": {"display": caller.client_id},
            }
        )
    return agents
