"""Policy fields (``_p_*``), computed at write time beside the search fields.

The access filter runs inside every database query, so what it tests must be stored as plain
top-level values (FerretDB mis-evaluates negations on dotted paths): the patient a resource
belongs to, a document's access keys (section + type), labels and authors, the Binaries it
points to, and the actors a Consent names.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .matrix import AccessMatrix

RPPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
#: The systems an RPPS-based identifier is written with: the IdNatPs OID, and the RPPS
#: register's URL (PDSm's contained authors use either).
RPPS_SYSTEMS = (RPPS_SYSTEM, "https://rpps.esante.gouv.fr")
FINESS_SYSTEMS = ("urn:oid:1.2.250.1.71.4.2.2", "https://finess.esante.gouv.fr")

#: Keys that name a person (authorship); organisation keys only matter for consents.
PERSON_KEY_PREFIXES = ("Practitioner/", "PractitionerRole/", "rpps:", "Patient/", "RelatedPerson/")

#: Looks up ``Type/id`` in the store (raw, no policy): used for PractitionerRole → Practitioner
#: and DocumentReference → patient.
Resolver = Callable[[str], Awaitable[dict[str, Any] | None]]


def patient_of(reference: Any) -> str | None:
    """``Patient/x`` (relative or absolute, possibly versioned) → ``x``."""
    if not isinstance(reference, dict):
        return None
    ref = reference.get("reference")
    if not isinstance(ref, str):
        return None
    parts = ref.split("/_history/")[0].rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] == "Patient" and parts[-1]:
        return parts[-1]
    return None


def labels_of(resource: dict[str, Any]) -> list[str]:
    codes: list[str] = []
    for concept in resource.get("securityLabel") or []:
        codes += [c["code"] for c in concept.get("coding") or [] if isinstance(c.get("code"), str)]
    for coding in (resource.get("meta") or {}).get("security") or []:
        if isinstance(coding.get("code"), str):
            codes.append(coding["code"])
    return sorted(set(codes))


def identifier_keys(identifier: Any) -> list[str]:
    """Access keys for a professional's or an organisation's identifier."""
    if not isinstance(identifier, dict):
        return []
    system, value = identifier.get("system"), identifier.get("value")
    if not isinstance(value, str):
        return []
    if system in RPPS_SYSTEMS:
        return rpps_keys(value)
    if system in FINESS_SYSTEMS:
        return [f"finess:{value}", f"finess:{value[1:]}"] if len(value) == 10 else [f"finess:{value}"]
    return []


def rpps_keys(value: str) -> list[str]:
    """IdNatPs is ``8`` + the 11-digit RPPS: accept both spellings."""
    keys = [f"rpps:{value}"]
    if len(value) == 12 and value.startswith("8"):
        keys.append(f"rpps:{value[1:]}")
    elif len(value) == 11:
        keys.append(f"rpps:8{value}")
    return keys


async def actor_keys(reference: Any, resource: dict[str, Any], resolve: Resolver) -> list[str]:
    """Keys of the person or organisation a Reference designates (``Practitioner/x``,
    ``Organization/y``, ``rpps:…``, ``finess:…``), following PractitionerRoles and contained
    resources."""
    if not isinstance(reference, dict):
        return []
    keys = identifier_keys(reference.get("identifier"))
    ref = reference.get("reference")
    if not isinstance(ref, str):
        return keys
    target: dict[str, Any] | None = None
    if ref.startswith("#"):
        target = next((c for c in resource.get("contained") or [] if c.get("id") == ref[1:]), None)
    else:
        parts = ref.split("/_history/")[0].split("/")
        if len(parts) >= 2:
            # A referenced PractitionerRole stays a role key: the caller's current roles are
            # added to their keys at request time, so a reassigned role never goes stale.
            keys.append(f"{parts[-2]}/{parts[-1]}")
    if target is not None:
        for ident in target.get("identifier") or []:
            keys += identifier_keys(ident)
        for key in ("practitioner", "organization"):
            inner = target.get(key)
            if isinstance(inner, dict):
                # ``#x`` inside a contained resource names a sibling: the container holds it.
                keys += await actor_keys(inner, resource, resolve)
    return sorted(set(keys))


async def policy_fields(
    rtype: str, resource: dict[str, Any], matrix: AccessMatrix, resolve: Resolver
) -> dict[str, Any]:
    """The ``_p_*`` fields of one resource version."""
    if rtype == "Patient":
        gps: list[str] = []
        for gp in resource.get("generalPractitioner") or []:
            gps += await actor_keys(gp, resource, resolve)
        # The médecin traitant is a person, not the practice they work in.
        gps = [k for k in gps if k.startswith(PERSON_KEY_PREFIXES)]
        return {"_p_patient": resource.get("id"), "_p_gp": sorted(set(gps))}
    if rtype == "DocumentReference":
        return await _document_fields(resource, matrix, resolve)
    if rtype == "List":
        return await list_fields(resource, matrix, resolve)
    if rtype == "Consent":
        actors: list[str] = []
        for provision in _provisions(resource.get("provision")):
            for actor in provision.get("actor") or []:
                actors += await actor_keys(actor.get("reference"), resource, resolve)
        return {
            "_p_patient": patient_of(resource.get("patient")),
            "_p_actors": sorted(set(actors)),
        }
    if rtype == "Binary":
        return await binary_fields(resource, resolve)
    if rtype == "RelatedPerson":
        return {"_p_patient": patient_of(resource.get("patient"))}
    if rtype in matrix.structured:
        return await structured_fields(rtype, resource, matrix, resolve)
    return {}


async def structured_fields(
    rtype: str, resource: dict[str, Any], matrix: AccessMatrix, resolve: Resolver
) -> dict[str, Any]:
    """Structured patient data (an Observation, a dispensation…) carries the same fields as a
    document: the access matrix places it in a section (``structuredData``), its labels are
    ``meta.security``, its authors the elements the matrix names."""
    spec = matrix.structured[rtype]
    authors: list[str] = []
    for path in spec.authors:
        for reference in _walk(resource, path.split(".")):
            authors += await actor_keys(reference, resource, resolve)
    return {
        "_p_patient": patient_of(resource.get(spec.patient)),
        "_p_keys": matrix.structured_keys(rtype, resource),
        "_p_labels": labels_of(resource),
        "_p_authors": sorted({k for k in authors if k.startswith(PERSON_KEY_PREFIXES)}),
    }


def _walk(value: Any, steps: list[str]) -> list[Any]:
    """The values at a dotted element path, arrays flattened at every step."""
    values = value if isinstance(value, list) else [value]
    if not steps:
        return [v for v in values if v is not None]
    out: list[Any] = []
    for item in values:
        if isinstance(item, dict):
            out += _walk(item.get(steps[0]), steps[1:])
    return out


#: Labels that hide a document from someone: what refers to it inherits them.
HIDING_LABELS = frozenset({"MASQUE_PS", "INVISIBLE_PATIENT", "INVISIBLE_REPRESENTANTS_LEGAUX"})


def document_id_of(reference: Any) -> str | None:
    """``DocumentReference/x`` (relative or absolute) → ``x``."""
    ref = reference.get("reference") if isinstance(reference, dict) else None
    if isinstance(ref, str) and "DocumentReference/" in ref:
        return ref.rsplit("DocumentReference/", 1)[1].split("/")[0] or None
    return None


async def binary_fields(resource: dict[str, Any], resolve: Resolver) -> dict[str, Any]:
    """A Binary belongs to the DocumentReference its ``securityContext`` names: it is read
    through that document only, and hidden like it."""
    context = resource.get("securityContext")
    owner_id = document_id_of(context)
    patient = patient_of(context)
    labels: list[str] = []
    if owner_id is not None:
        owner = await resolve(f"DocumentReference/{owner_id}")
        if owner is not None:
            patient = patient_of(owner.get("subject"))
            labels = [code for code in labels_of(owner) if code in HIDING_LABELS]
    return {"_p_patient": patient, "_p_document": owner_id, "_p_labels": labels}


async def list_fields(resource: dict[str, Any], matrix: AccessMatrix, resolve: Resolver) -> dict[str, Any]:
    """A submission set reveals its documents (ids, title): it is hidden like the most hidden
    of them, and carries their access keys."""
    labels: set[str] = set()
    keys: set[str] = set()
    for entry in resource.get("entry") or []:
        doc_id = document_id_of(entry.get("item"))
        if doc_id is None:
            continue
        item = await resolve(f"DocumentReference/{doc_id}")
        if item is None:
            continue
        labels |= {code for code in labels_of(item) if code in HIDING_LABELS}
        fields = await _document_fields(item, matrix, resolve)
        keys |= set(fields["_p_keys"])
    authors = await actor_keys(resource.get("source"), resource, resolve)
    return {
        "_p_patient": patient_of(resource.get("subject")),
        "_p_labels": sorted(labels),
        "_p_keys": sorted(keys),
        "_p_authors": sorted(k for k in authors if k.startswith(PERSON_KEY_PREFIXES)),
    }


async def _document_fields(
    resource: dict[str, Any], matrix: AccessMatrix, resolve: Resolver
) -> dict[str, Any]:
    types = [c.get("code", "") for c in (resource.get("type") or {}).get("coding") or []]
    sections = [
        c.get("code", "")
        for concept in resource.get("category") or []
        for c in concept.get("coding") or []
        if c.get("system") == matrix.section_override_system
    ]
    authors: list[str] = []
    for author in resource.get("author") or []:
        authors += await actor_keys(author, resource, resolve)
    # Authorship is personal: a colleague of the same organisation is not the author.
    authors = [k for k in authors if k.startswith(PERSON_KEY_PREFIXES)]
    binaries = []
    for content in resource.get("content") or []:
        url = (content.get("attachment") or {}).get("url")
        if isinstance(url, str) and "Binary/" in url:
            binaries.append(url.rsplit("Binary/", 1)[1].split("/")[0])
    return {
        "_p_patient": patient_of(resource.get("subject")),
        "_p_keys": matrix.document_keys(types, sections),
        "_p_labels": labels_of(resource),
        "_p_authors": sorted(set(authors)),
        "_p_binaries": sorted(set(binaries)),
    }


def _provisions(provision: Any) -> list[dict[str, Any]]:
    """A provision and all its nested provisions, depth first."""
    if not isinstance(provision, dict):
        return []
    out = [provision]
    for child in provision.get("provision") or []:
        out += _provisions(child)
    return out
