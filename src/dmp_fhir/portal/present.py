"""What the pages show, computed from the API's resources: documents grouped by DMP section,
access decisions, audit events — in French, with no access logic of its own (the API already
decided what this person may see)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..policy.matrix import DEFAULT_MATRIX, UNCLASSIFIED, AccessMatrix

VISIBILITY = (
    "https://mos.esante.gouv.fr/NOS/TRE_A07-StatusVisibiliteDocument/FHIR/TRE-A07-StatusVisibiliteDocument"
)
MASKED = "MASQUE_PS"
EMERGENCY = frozenset({"ETREAT", "BTG"})
MONTHS = (
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
)
INTERACTIONS = {
    "read": "a consulté",
    "vread": "a consulté une version de",
    "search-type": "a recherché",
    "create": "a ajouté",
    "update": "a modifié",
    "patch": "a modifié",
    "delete": "a supprimé",
    "history-instance": "a consulté l'historique de",
    "history-type": "a consulté l'historique de",
    "operation": "a exécuté une opération sur",
    "transaction": "a transmis",
    "batch": "a transmis",
}
TYPES = {
    "DocumentReference": "documents",
    "Binary": "contenu d'un document",
    "Patient": "dossier",
    "Consent": "autorisations",
    "RelatedPerson": "représentants légaux",
    "List": "lots de documents",
    "AuditEvent": "historique",
}
OPERATIONS = {
    "dmp-access": "a modifié les autorisations d'accès",
    "dmp-close": "a fermé le DMP",
    "dmp-reopen": "a rouvert le DMP",
    "dmp-create": "a créé le DMP",
    "dmp-destroy": "a détruit des données",
}


@cache
def _matrix_data() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DEFAULT_MATRIX.read_text(encoding="utf-8"))
    return data


def section_titles() -> dict[str, str]:
    sections = {code: str(s.get("display", code)) for code, s in _matrix_data()["sections"].items()}
    sections[UNCLASSIFIED] = "Autres documents"
    return sections


def profession_names() -> dict[str, str]:
    """Profession code → its name ("Médecin", "Masseur-kinésithérapeute"…), from the matrix."""
    return {
        str(rule["profession"]): str(rule.get("display", "")).split(" (")[0]
        for rule in _matrix_data()["rules"]
        if rule.get("specialty") is None
    }


@cache
def _paris() -> tzinfo | None:
    try:
        return ZoneInfo("Europe/Paris")
    except ZoneInfoNotFoundError:  # no time zone database: times stay as the server wrote them
        return None


def french_date(value: str | None, *, time_of_day: bool = False) -> str:
    if not value:
        return "date inconnue"
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00")) if "T" in value else None
    except ValueError:
        moment = None
    if moment is None:
        parts = value.split("-")
        if len(parts) == 3 and all(p.isdigit() for p in parts) and 1 <= int(parts[1]) <= 12:
            return f"{int(parts[2])} {MONTHS[int(parts[1]) - 1]} {parts[0]}"
        return value
    zone = _paris()
    if zone is not None and moment.tzinfo is not None:
        moment = moment.astimezone(zone)  # what a French reader expects
    text = f"{moment.day} {MONTHS[moment.month - 1]} {moment.year}"
    return f"{text} à {moment:%H:%M}" if time_of_day else text


def human_name(resource: dict[str, Any] | None) -> str | None:
    if not resource:
        return None
    if resource.get("resourceType") == "Organization":
        return str(resource.get("name") or "") or None
    for name in resource.get("name") or []:
        given = " ".join(name.get("given") or [])
        text = name.get("text") or f"{given} {name.get('family', '')}".strip()
        if text:
            return str(text)
    return None


def codes(concepts: list[dict[str, Any]] | dict[str, Any] | None) -> list[tuple[str, str, str]]:
    """(system, code, display) of every coding of one or several CodeableConcepts."""
    items = concepts if isinstance(concepts, list) else [concepts] if concepts else []
    return [
        (str(c.get("system", "")), str(c.get("code", "")), str(c.get("display", "")))
        for concept in items
        for c in (concept or {}).get("coding") or []
    ]


@dataclass
class DocumentView:
    id: str
    version: str | None
    title: str
    type: str
    section: str
    author: str
    date: str
    sort_key: str
    masked: bool
    content_type: str | None
    binary: str | None
    description: str | None
    resource: dict[str, Any] = field(repr=False)
    #: The attachment's own base64 ``data`` when the content is inline rather than a Binary.
    data: str | None = None

    @property
    def has_content(self) -> bool:
        return bool(self.content_type) and (self.binary is not None or self.data is not None)


def document_view(doc: dict[str, Any], matrix: AccessMatrix, names: dict[str, str]) -> DocumentView:
    type_codes = codes(doc.get("type"))
    section_codes = [code for _s, code, _d in codes(doc.get("category"))]
    section = matrix.document_keys([c for _s, c, _d in type_codes], section_codes)[0]
    known = _matrix_data()["documentTypes"]
    type_label = next(
        (d or str(known.get(c, {}).get("display", "")) for _s, c, d in type_codes if d or c in known),
        "Document",
    )
    attachment = next((c.get("attachment") or {} for c in doc.get("content") or []), {})
    authors = []
    for author in doc.get("author") or []:
        ref = author.get("reference")
        authors.append(
            author.get("display")
            or names.get(str(ref))
            or ("vous-même" if str(ref).startswith("Patient/") else "auteur non précisé")
        )
    binary = attachment.get("url")
    if isinstance(binary, str) and "Binary/" in binary:
        binary = "Binary/" + binary.rsplit("Binary/", 1)[1]
    else:
        binary = None
    date = str(doc.get("date") or attachment.get("creation") or "")
    return DocumentView(
        id=str(doc.get("id")),
        version=(doc.get("meta") or {}).get("versionId"),
        title=str(attachment.get("title") or type_label),
        type=type_label,
        section=section,
        author=", ".join(authors) or "auteur non précisé",
        date=french_date(date),
        sort_key=date,
        masked=any(code == MASKED for _s, code, _d in codes(doc.get("securityLabel"))),
        content_type=attachment.get("contentType"),
        binary=binary,
        description=doc.get("description"),
        resource=doc,
        data=attachment.get("data") if isinstance(attachment.get("data"), str) else None,
    )


def by_section(documents: list[DocumentView]) -> list[tuple[str, str, list[DocumentView]]]:
    """(code, title, documents newest first) in the DMP's section order."""
    titles = section_titles()
    out = []
    for code, title in titles.items():
        docs = sorted((d for d in documents if d.section == code), key=lambda d: d.sort_key, reverse=True)
        if docs:
            out.append((code, title, docs))
    return out


def mask_patch(doc: dict[str, Any], mask: bool) -> list[dict[str, Any]] | None:
    """The JSON Patch that adds or removes ``MASQUE_PS``; None when there is nothing to do.
    A ``test`` operation guards the removal (and If-Match the whole patch)."""
    labels = doc.get("securityLabel") or []
    index = next(
        (i for i, label in enumerate(labels) if any(c == MASKED for _s, c, _d in codes(label))), None
    )
    if mask:
        if index is not None:
            return None
        label = {
            "coding": [
                {"system": VISIBILITY, "code": MASKED, "display": "Masqué aux professionnels de santé"}
            ]
        }
        return [
            {
                "op": "add",
                "path": "/securityLabel" + ("/-" if labels else ""),
                "value": label if labels else [label],
            }
        ]
    if index is None:
        return None
    return [
        {"op": "test", "path": f"/securityLabel/{index}", "value": labels[index]},
        {"op": "remove", "path": f"/securityLabel/{index}"},
    ]


@dataclass
class AccessView:
    authorised: list[tuple[str, str]]  # (reference or identifier key, display)
    blocked: list[tuple[str, str]]
    emergency_opposed: bool

    @property
    def blocked_keys(self) -> set[str]:
        return {key for key, _name in self.blocked}


def actor_key(actor: dict[str, Any]) -> str | None:
    reference = actor.get("reference") or {}
    if reference.get("reference"):
        return str(reference["reference"])
    identifier = reference.get("identifier") or {}
    if identifier.get("value"):
        return f"{identifier.get('system', '')}|{identifier['value']}"
    return None


def access_view(consents: list[dict[str, Any]], names: dict[str, str]) -> AccessView:
    authorised: dict[str, str] = {}
    blocked: dict[str, str] = {}
    opposed = False
    for consent in consents:
        if consent.get("status") != "active":
            continue
        if any(code == "CREATION_DMP" for _s, code, _d in codes(consent.get("category"))):
            continue
        provision = consent.get("provision") or {}
        actors = [k for k in (actor_key(a) for a in provision.get("actor") or []) if k]
        purposes = {p.get("code") for p in provision.get("purpose") or []}
        if provision.get("type") == "deny" and not actors and purposes & EMERGENCY:
            opposed = True
        target = blocked if provision.get("type") == "deny" else authorised
        for key in actors:
            target[key] = names.get(key) or key.split("|")[-1]
    return AccessView(
        sorted(authorised.items(), key=lambda kv: kv[1]),
        sorted(blocked.items(), key=lambda kv: kv[1]),
        opposed,
    )


@dataclass
class EventView:
    when: str
    who: str
    role: str | None
    what: str
    outcome_ok: bool
    outcome: str | None
    emergency: bool


def event_view(event: dict[str, Any], names: dict[str, str], me: str) -> EventView:
    agent: dict[str, Any] = next((a for a in event.get("agent") or [] if a.get("requestor")), {})
    who_ref = (agent.get("who") or {}).get("reference")
    role = next((profession_names().get(c) for _s, c, _d in codes(agent.get("role")) if c), None)
    if who_ref == me:
        who = "Vous"
    elif who_ref:
        who = names.get(who_ref) or who_ref.split("/", 1)[-1]
        if who_ref.startswith("RelatedPerson/"):
            role = "Représentant légal"
        elif who_ref.startswith("Patient/"):
            role = "Patient"
    else:
        who = str((agent.get("who") or {}).get("display") or "inconnu")
    subtypes = [code for _s, code, _d in codes({"coding": event.get("subtype") or []})]
    operation = next((OPERATIONS[c] for c in subtypes if c in OPERATIONS), None)
    interaction = next((INTERACTIONS[c] for c in subtypes if c in INTERACTIONS), "a accédé à")
    entities = [
        str((e.get("what") or {}).get("reference", "")).split("/")[0]
        for e in event.get("entity") or []
        if (e.get("what") or {}).get("reference")
    ]
    query_type = next((str(e.get("description")) for e in event.get("entity") or [] if e.get("query")), None)
    targets = [t for t in entities if t != "Patient"] or ([query_type] if query_type else entities)
    what = operation or f"{interaction} : {TYPES.get(targets[0], targets[0]) if targets else 'dossier'}"
    purposes = {code for _s, code, _d in codes(event.get("purposeOfEvent"))}
    return EventView(
        when=french_date(event.get("recorded"), time_of_day=True),
        who=who,
        role=role,
        what=what,
        outcome_ok=event.get("outcome") == "0",
        outcome=event.get("outcomeDesc"),
        emergency=bool(purposes & EMERGENCY),
    )
