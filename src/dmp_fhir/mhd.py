"""IHE MHD Provide Document Bundle (ITI-65) rules, as the French guide (PDSm) applies them.

A transaction Bundle holding a submission-set List is a Provide Document Bundle. Before anything
is stored, its documents must agree with the submission set and with their content; every
refusal names the Bundle entry and element at fault. These checks only read the Bundle and the
current state; what gets written is decided by the transaction that follows.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .errors import BadRequest, Conflict, Unprocessable
from .lifecycle.identity import INS_SYSTEMS, patient_ins_keys

MHD_LIST_TYPES = "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes"
#: PDSm requires these on every DocumentReference it receives.
REQUIRED_DOCUMENT_ELEMENTS = (
    "masterIdentifier",
    "type",
    "category",
    "subject",
    "date",
    "author",
    "securityLabel",
)


@dataclass(slots=True)
class Entry:
    """A write entry of the Bundle, its references already resolved to ``Type/id``."""

    index: int
    rtype: str
    rid: str
    resource: dict[str, Any] | None

    @property
    def key(self) -> str:
        return f"{self.rtype}/{self.rid}"

    def where(self, element: str = "") -> str:
        base = self.rtype if self.index < 0 else f"Bundle.entry[{self.index}].resource"
        return base + (f".{element}" if element else "")


#: Reads one resource by ``Type/id`` as the caller may see it (None: absent or hidden).
Lookup = Callable[[str], Awaitable[dict[str, Any] | None]]
#: Finds live DocumentReferences by ``system|value`` of their identifiers.
IdentifierLookup = Callable[[str], Awaitable[list[str]]]
#: Takes a document's masterIdentifier (``system|value``) for it, or raises 409.
MasterClaim = Callable[["Entry", str], Awaitable[None]]


def is_submission_set(resource: Any) -> bool:
    if not isinstance(resource, dict) or resource.get("resourceType") != "List":
        return False
    codings = (resource.get("code") or {}).get("coding") or []
    return any(c.get("system") == MHD_LIST_TYPES and c.get("code") == "submissionset" for c in codings)


def sha1_base64(data: bytes) -> str:
    """FHIR R4 Attachment.hash: the SHA-1 of the data, base64-encoded."""
    return base64.b64encode(hashlib.sha1(data, usedforsecurity=False).digest()).decode("ascii")


def externalize_inline_content(entries: list[Entry]) -> list[Entry]:
    """Attachments sent inline become Binary entries that the attachment points to.

    The stored DocumentReference then has the same shape whichever way its content came, and
    ITI-68 retrieves every document the same way (large content goes to GridFS with its Binary).
    """
    added: list[Entry] = []
    for entry in entries:
        if entry.rtype != "DocumentReference" or entry.resource is None:
            continue
        for content in entry.resource.get("content") or ():
            attachment = content.get("attachment") if isinstance(content, dict) else None
            if not isinstance(attachment, dict) or "data" not in attachment:
                continue
            binary_id = str(uuid.uuid4())
            binary: dict[str, Any] = {
                "resourceType": "Binary",
                "id": binary_id,
                "contentType": attachment.get("contentType", "application/octet-stream"),
                "securityContext": {"reference": entry.key},
                "data": attachment.pop("data"),
            }
            attachment["url"] = f"Binary/{binary_id}"
            added.append(Entry(entry.index, "Binary", binary_id, binary))
    return entries + added


async def check_provide_bundle(
    entries: list[Entry],
    lookup: Lookup,
    documents_with_identifier: IdentifierLookup,
    claim: MasterClaim | None = None,
) -> None:
    """Raise a precise 4xx for the first inconsistency of an ITI-65 Bundle."""
    sets = [e for e in entries if is_submission_set(e.resource)]
    if len(sets) != 1:
        raise Unprocessable(
            f"A Provide Document Bundle holds exactly one submission set List (found {len(sets)}).",
            code="structure",
            expression=("Bundle.entry",),
        )
    submission = sets[0]
    assert submission.resource is not None
    patient = _reference(submission.resource.get("subject"))
    if patient is None or not patient.startswith("Patient/"):
        raise Unprocessable(
            "The submission set must name its patient.",
            code="required",
            expression=(submission.where("subject"),),
        )
    planned = {e.key: e.resource for e in entries if e.resource is not None}
    patient_resource = planned.get(patient) or await lookup(patient)
    if patient_resource is None:
        raise Unprocessable(
            f"{patient} is not known to this DMP.",
            code="not-found",
            expression=(submission.where("subject"),),
        )
    if not any(
        i.get("system") in INS_SYSTEMS and i.get("value") for i in patient_resource.get("identifier") or ()
    ):
        raise Unprocessable(
            f"{patient} has no INS identifier: documents are shared only for a qualified identity.",
            code="business-rule",
            expression=(submission.where("subject"),),
        )
    listed = {
        _reference(item.get("item"))
        for item in submission.resource.get("entry") or ()
        if isinstance(item, dict)
    }
    documents = [e for e in entries if e.rtype == "DocumentReference" and e.resource is not None]
    if not documents:
        raise Unprocessable(
            "A Provide Document Bundle carries at least one DocumentReference.",
            code="required",
            expression=("Bundle.entry",),
        )
    seen_ids: set[str] = set()
    for doc in documents:
        resource = doc.resource
        assert resource is not None
        for element in REQUIRED_DOCUMENT_ELEMENTS:
            if not resource.get(element):
                raise Unprocessable(
                    f"DocumentReference.{element} is required by the DMP (PDSm).",
                    code="required",
                    expression=(doc.where(element),),
                )
        if _reference(resource.get("subject")) != patient:
            raise Unprocessable(
                f"The document's subject must be the submission set's patient ({patient}).",
                code="business-rule",
                expression=(doc.where("subject"),),
            )
        await check_source_patient(doc, patient, lookup, known=patient_resource)
        if doc.key not in listed:
            raise Unprocessable(
                f"{doc.key} is not listed by the submission set.",
                code="business-rule",
                expression=(submission.where("entry"),),
            )
        token = _master_token(resource)
        if token in seen_ids:
            raise Unprocessable(
                "Two documents of the Bundle share a masterIdentifier.",
                code="duplicate",
                expression=(doc.where("masterIdentifier"),),
            )
        seen_ids.add(token)
        for n, content in enumerate(resource.get("content") or ()):
            _check_attachment(doc, n, content.get("attachment") or {}, planned)
    await check_master_identifiers(documents, documents_with_identifier, claim)


async def check_plain_document(
    entries: list[Entry],
    documents_with_identifier: IdentifierLookup,
    lookup: Lookup,
    claim: MasterClaim | None = None,
) -> None:
    """A plain create/update of a DocumentReference (``entries[0]``, index -1), after
    ``externalize_inline_content``: the same content and identity rules as ITI-65 — size and
    SHA-1 of what was sent inline, masterIdentifier unique, the source's patient the subject."""
    doc = entries[0]
    resource = doc.resource or {}
    await check_source_patient(doc, _reference(resource.get("subject")), lookup)
    planned = {e.key: e.resource for e in entries if e.resource is not None}
    for n, content in enumerate(resource.get("content") or ()):
        attachment = (content or {}).get("attachment") or {}
        if attachment.get("url") in planned and attachment.get("url") != doc.key:
            _check_attachment(doc, n, attachment, planned)
    if resource.get("masterIdentifier"):
        await check_master_identifiers([doc], documents_with_identifier, claim)


async def check_master_identifiers(
    documents: list[Entry], documents_with_identifier: IdentifierLookup, claim: MasterClaim | None = None
) -> None:
    """409 when another live document already carries one of these masterIdentifiers.

    The search sees stored documents only: two submissions of one document at the same time
    (a sender retrying after a timeout) would both pass it. ``claim`` then takes each
    masterIdentifier under a unique key (storage/claims.py), which only one of them wins."""
    tokens = [_master_token(doc.resource or {}) for doc in documents]
    existing = await asyncio.gather(*(documents_with_identifier(token) for token in tokens))
    for doc, token, found in zip(documents, tokens, existing, strict=True):
        if [other for other in found if other != doc.rid]:
            raise duplicate_document(doc, token)
    if claim is not None:
        for doc, token in zip(documents, tokens, strict=True):
            await claim(doc, token)


def duplicate_document(doc: Entry, token: str) -> Conflict:
    return Conflict(
        f"A document with masterIdentifier {token.partition('|')[2]} already exists; "
        "send a replacement (relatesTo replaces) instead.",
        code="duplicate",
        expression=(doc.where("masterIdentifier"),),
    )


def _master_token(resource: dict[str, Any]) -> str:
    master = resource.get("masterIdentifier") or {}
    return f"{master.get('system', '')}|{master.get('value', '')}"


def _check_attachment(doc: Entry, n: int, attachment: dict[str, Any], planned: dict[str, Any]) -> None:
    where = doc.where(f"content[{n}].attachment")
    url = attachment.get("url")
    binary = planned.get(url) if isinstance(url, str) else None
    if binary is None or binary.get("resourceType") != "Binary":
        raise Unprocessable(
            "The attachment must point to its content: a Binary of the same Bundle.",
            code="required",
            expression=(f"{where}.url",),
        )
    if binary.get("securityContext") is None:
        # Neither MHD nor PDSm requires it: the server binds the content to its document.
        binary["securityContext"] = {"reference": doc.key}
    security = _reference(binary.get("securityContext"))
    if security != doc.key:
        raise Unprocessable(
            f"{url}.securityContext must name the document it belongs to ({doc.key}).",
            code="business-rule",
            expression=(f"{where}.url",),
        )
    try:
        data = base64.b64decode(binary.get("data") or "", validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{url} holds invalid base64 data.", expression=(f"{where}.url",)) from None
    if "size" not in attachment or "hash" not in attachment:
        raise Unprocessable(
            "attachment.size and attachment.hash are required (PDSm).",
            code="required",
            expression=(f"{where}.size" if "size" not in attachment else f"{where}.hash",),
        )
    if attachment["size"] != len(data):
        raise Unprocessable(
            f"attachment.size is {attachment['size']} but the content has {len(data)} bytes.",
            code="value",
            expression=(f"{where}.size",),
        )
    if attachment["hash"] != sha1_base64(data):
        raise Unprocessable(
            "attachment.hash is not the SHA-1 (base64) of the content.",
            code="value",
            expression=(f"{where}.hash",),
        )


def replaced_documents(entry: Entry) -> list[str]:
    """The ``DocumentReference/id`` that this document replaces (relatesTo.code = replaces)."""
    if entry.rtype != "DocumentReference" or entry.resource is None:
        return []
    out = []
    for relation in entry.resource.get("relatesTo") or ():
        if isinstance(relation, dict) and relation.get("code") == "replaces":
            target = _reference(relation.get("target"))
            if target is not None:
                out.append(target)
    return out


async def check_source_patient(
    doc: Entry, subject: str | None, lookup: Lookup, *, known: dict[str, Any] | None = None
) -> None:
    """``context.sourcePatientInfo`` is the patient as the sending system knew them: it must be
    the document's subject. A reference to another Patient, or a contained Patient whose INS is
    not the subject's, is a document about to be filed in the wrong record — refused (422)
    before anything is stored. A contained Patient without an INS cannot be compared and is
    accepted. ``known``: the subject's resource when the caller has it already."""
    resource = doc.resource or {}
    source = _reference((resource.get("context") or {}).get("sourcePatientInfo"))
    if source is None or subject is None or not subject.startswith("Patient/"):
        return
    where = doc.where("context.sourcePatientInfo")
    if source.startswith("#"):
        contained = next(
            (
                c
                for c in resource.get("contained") or ()
                if isinstance(c, dict) and c.get("resourceType") == "Patient" and c.get("id") == source[1:]
            ),
            None,
        )
        claimed = _ins_values(contained)
        if not claimed:
            return
        subject_resource = known if known is not None else await lookup(subject)
        if subject_resource is not None and not claimed & _ins_values(subject_resource):
            raise Unprocessable(
                f"context.sourcePatientInfo carries an INS that is not {subject}'s: the document "
                "belongs to another patient's record.",
                code="business-rule",
                expression=(where,),
            )
    elif source.startswith("Patient/") and source != subject:
        raise Unprocessable(
            f"context.sourcePatientInfo ({source}) is not the document's subject ({subject}).",
            code="business-rule",
            expression=(where,),
        )


def _ins_values(patient: dict[str, Any] | None) -> set[str]:
    """The INS values of a Patient (NIR or NIA, whatever the OID's spelling)."""
    return {key.partition("|")[2] for key in patient_ins_keys(patient) if key.partition("|")[2]}


def _reference(value: Any) -> str | None:
    if isinstance(value, dict) and isinstance(value.get("reference"), str):
        return str(value["reference"])
    return None


# -- document source side -------------------------------------------------------------

LOINC = "http://loinc.org"
CLASS_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
FORMAT_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_A11-IheFormatCode/FHIR/TRE-A11-IheFormatCode"


def _format_code(content_type: str) -> str:
    """The IHE format code a document source gives its content (PDF, CDA, else unstructured)."""
    if content_type == "application/pdf":
        return "urn:ihe:iti:xds-sd:pdf:2008"
    if content_type in ("text/xml", "application/xml"):
        return "urn:ihe:iti:xds-sd:text:2008"
    return "urn:ihe:iti:xds-sd:text:2008"


@dataclass(frozen=True, slots=True)
class SourceDocument:
    """One document as a producing system has it: content and the few codes that classify it."""

    content: bytes
    content_type: str = "application/pdf"
    type_code: str = "11488-4"  # consultation note
    class_code: str = "10"  # report
    title: str = "Compte rendu de consultation"
    labels: tuple[tuple[str, str], ...] = ((CONFIDENTIALITY, "N"),)
    replaces: str | None = None  # DocumentReference/id


def provide_bundle(patient: str, author: str, documents: list[SourceDocument]) -> dict[str, Any]:
    """An ITI-65 Provide Document Bundle as a document source sends it (``urn:uuid`` links).

    Used by the tests, the ingest benchmark and the load script: what an integrator posts.
    """
    set_url = f"urn:uuid:{uuid.uuid4()}"
    entries: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    for doc in documents:
        doc_url, bin_url = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
        items.append({"item": {"reference": doc_url}})
        document: dict[str, Any] = {
            "resourceType": "DocumentReference",
            "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:oid:2.25.{uuid.uuid4().int}"},
            "status": "current",
            "type": {"coding": [{"system": LOINC, "code": doc.type_code}]},
            "category": [{"coding": [{"system": CLASS_SYSTEM, "code": doc.class_code}]}],
            "subject": {"reference": patient},
            "date": "2026-11-20T10:00:00+01:00",
            "author": [{"reference": author}],
            "securityLabel": [{"coding": [{"system": s, "code": c}]} for s, c in doc.labels],
            "content": [
                {
                    "attachment": {
                        "contentType": doc.content_type,
                        "url": bin_url,
                        "size": len(doc.content),
                        "hash": sha1_base64(doc.content),
                        "title": doc.title,
                    },
                    "format": {"system": FORMAT_SYSTEM, "code": _format_code(doc.content_type)},
                }
            ],
            "context": {"period": {"start": "2026-11-20T09:30:00+01:00"}},
        }
        if doc.replaces:
            document["relatesTo"] = [{"code": "replaces", "target": {"reference": doc.replaces}}]
        entries.append(
            {
                "fullUrl": doc_url,
                "resource": document,
                "request": {"method": "POST", "url": "DocumentReference"},
            }
        )
        binary = {
            "resourceType": "Binary",
            "contentType": doc.content_type,
            "securityContext": {"reference": doc_url},
            "data": base64.b64encode(doc.content).decode("ascii"),
        }
        entries.append(
            {"fullUrl": bin_url, "resource": binary, "request": {"method": "POST", "url": "Binary"}}
        )
    submission = {
        "resourceType": "List",
        "status": "current",
        "mode": "working",
        "code": {"coding": [{"system": MHD_LIST_TYPES, "code": "submissionset"}]},
        "subject": {"reference": patient},
        "date": "2026-11-20T10:00:00+01:00",
        "source": {"reference": author},
        "entry": items,
    }
    entries.insert(
        0, {"fullUrl": set_url, "resource": submission, "request": {"method": "POST", "url": "List"}}
    )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


#: ITI-67 names the patient one of these ways (the chained forms are the PDSm's).
_PATIENT_PARAMS = frozenset({"patient", "patient.identifier", "subject", "subject.identifier"})


def check_find_documents(params: list[tuple[str, str]]) -> None:
    """Find Document References (ITI-67): the patient and the status are required."""
    names = {key.split(":")[0] for key, _ in params}
    missing = [
        what
        for what, present in (
            ("patient (or patient.identifier)", names & _PATIENT_PARAMS),
            ("status", "status" in names),
        )
        if not present
    ]
    if missing:
        raise BadRequest(
            "A DocumentReference search (IHE ITI-67) must include " + " and ".join(missing) + ".",
            code="required",
        )
