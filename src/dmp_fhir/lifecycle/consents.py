"""The Consent shapes of the DMP's life (the same shapes as samples/20-consents.json, which the
access policy reads in ``policy/relations.py``).

- creation: the informed consent to open the DMP — ``policyRule`` OPTIN, a top-level ``permit``
  naming no actor (so it grants nobody anything), category ``CREATION_DMP``, and an extension
  saying who collected it and that the information leaflet was given; ``dateTime`` = when.
- grant: ``permit`` naming the actor (Practitioner, PractitionerRole, Organization or an
  RPPS/FINESS identifier), purpose TREAT, ``period.start`` today.
- block: ``deny`` naming the actor (a deny naming an actor blocks it, whatever the purpose).
- attested grant: a grant recorded by the professional it names — at the DMP's creation
  (``dmp-create``) or on the patient's word given in person (``patient-present``) — with an
  extension saying so; the patient revokes it like any other.
- emergency opposition: ``deny`` naming nobody, purposes ETREAT and BTG.
Revoking, unblocking and allowing emergency access make the matching active Consents
``inactive`` (a new version of each): the history keeps every decision.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from ..errors import BadRequest

CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
CONSENT_ACTION = "http://terminology.hl7.org/CodeSystem/consentaction"
V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V3_ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
V3_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
LOINC = "http://loinc.org"
DMP_CONSENT_CATEGORY = "https://dmp-fhir.example.org/fhir/CodeSystem/dmp-consent-category"
COLLECTION_EXT = "https://dmp-fhir.example.org/fhir/StructureDefinition/dmp-consent-collection"
#: On a grant a professional recorded: who attested the patient's agreement, and how.
ATTESTATION_EXT = "https://dmp-fhir.example.org/fhir/StructureDefinition/dmp-consent-attestation"
#: The one attestation accepted: the patient agreed in person, during the visit.
PATIENT_PRESENT = "patient-present"
EMERGENCY = ("ETREAT", "BTG")

ACTIONS = ("grant", "revoke", "block", "unblock", "oppose-emergency", "allow-emergency")
ACTOR_TYPES = ("Practitioner", "PractitionerRole", "Organization")


def _cc(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}]}


def _base(pid: str, moment: str, kind: str, rule: str, provision: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "status": "active",
        "scope": _cc(CONSENT_SCOPE, "patient-privacy", "Privacy Consent"),
        # The profiles tell the two kinds apart by category (profiles/StructureDefinition).
        "category": [
            _cc(DMP_CONSENT_CATEGORY, "CREATION_DMP", "Création du DMP")
            if kind == "DMP_CREATION"
            else _cc(LOINC, "59284-0", "Patient Consent")
        ],
        "patient": {"reference": f"Patient/{pid}"},
        "dateTime": moment,
        "performer": [{"reference": f"Patient/{pid}"}],
        "policyRule": _cc(V3_ACT_CODE, rule, {"OPTIN": "opt-in", "OPTOUT": "opt-out"}[rule]),
        "provision": provision,
    }


def creation_consent(pid: str, moment: str, collector: dict[str, Any], leaflet_given: bool) -> dict[str, Any]:
    consent = _base(
        pid,
        moment,
        "DMP_CREATION",
        "OPTIN",
        {"type": "permit", "action": [_cc(CONSENT_ACTION, "collect", "Collect")]},
    )
    consent["extension"] = [
        {
            "url": COLLECTION_EXT,
            "extension": [
                {"url": "collector", "valueReference": collector},
                {"url": "informationLeafletGiven", "valueBoolean": leaflet_given},
            ],
        }
    ]
    return consent


def check_actor(actor: Any) -> dict[str, Any]:
    """A professional or an establishment: ``Type/id`` or an RPPS/FINESS identifier."""
    if not isinstance(actor, dict):
        raise BadRequest("$dmp-access: 'actor' must be a Reference.", code="structure")
    ref = actor.get("reference")
    if isinstance(ref, str):
        kind, _, rid = ref.partition("/")
        if kind not in ACTOR_TYPES or not rid or "/" in rid:
            raise BadRequest(
                "$dmp-access: 'actor' names a Practitioner, PractitionerRole or Organization.",
                code="value",
            )
        return {"reference": ref}
    if isinstance(actor.get("identifier"), dict):
        return {"identifier": actor["identifier"]}
    raise BadRequest("$dmp-access: 'actor' needs a reference or an identifier.", code="required")


def access_consent(pid: str, moment: str, action: str, actor: dict[str, Any] | None) -> dict[str, Any]:
    """The new Consent written by ``grant``, ``block`` or ``oppose-emergency``."""
    recipient = _cc(V3_PARTICIPATION, "PRCP", "primary information recipient")
    access = [_cc(CONSENT_ACTION, "access", "Access")]
    if action == "grant":
        assert actor is not None
        provision: dict[str, Any] = {
            "type": "permit",
            "period": {"start": date.fromisoformat(moment[:10]).isoformat()},
            "actor": [{"role": recipient, "reference": actor}],
            "action": access,
            "purpose": [{"system": V3_ACT_REASON, "code": "TREAT", "display": "treatment"}],
        }
        return _base(pid, moment, "ACCESS_GRANT", "OPTIN", provision)
    if action == "block":
        assert actor is not None
        provision = {"type": "deny", "actor": [{"role": recipient, "reference": actor}], "action": access}
        return _base(pid, moment, "ACCESS_BLOCK", "OPTOUT", provision)
    provision = {
        "type": "deny",
        "action": access,
        "purpose": [
            {"system": V3_ACT_REASON, "code": "ETREAT", "display": "Emergency Treatment"},
            {"system": V3_ACT_REASON, "code": "BTG", "display": "break the glass"},
        ],
    }
    return _base(pid, moment, "EMERGENCY_OPPOSITION", "OPTOUT", provision)


def attested(consent: dict[str, Any], professional: dict[str, Any], how: str) -> dict[str, Any]:
    """A grant recorded by the professional it names, on the patient's word given in person
    (or by the creation of the DMP): the extension says who recorded it and how."""
    consent = dict(consent)
    consent["extension"] = [
        {
            "url": ATTESTATION_EXT,
            "extension": [
                {"url": "attestedBy", "valueReference": professional},
                {"url": "attestation", "valueCode": how},
            ],
        }
    ]
    return consent


def ends(consent: dict[str, Any], action: str, actor_keys: set[str], stored_actors: list[str]) -> bool:
    """Does ``revoke`` / ``unblock`` / ``allow-emergency`` end this active Consent?"""
    if consent.get("status") != "active":
        return False
    provision = consent.get("provision") or {}
    kind = provision.get("type", "permit")
    purposes = {p.get("code") for p in provision.get("purpose") or [] if isinstance(p, dict)}
    if action == "allow-emergency":
        return kind == "deny" and bool(purposes & set(EMERGENCY)) and not provision.get("actor")
    names_actor = bool(actor_keys & set(stored_actors))
    if action == "revoke":
        return kind == "permit" and names_actor
    return kind == "deny" and names_actor and not purposes & set(EMERGENCY)
