"""The record's pages: Mon dossier, a document (content, masking), who may access, the access
history and closing — each one a few FHIR API calls with the person's token."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from .api import ApiError, FhirApi
from .content import content_of, preview
from .present import access_view, by_section, document_view, event_view, human_name, mask_patch
from .state import portal_of
from .web import RESOURCE_ID, api_failure, api_for, checked_form, error, page, refused, signed_in

_ACTOR = re.compile(r"(Practitioner|PractitionerRole|Organization)/[A-Za-z0-9\-.]{1,64}")
ACTIONS = ("grant", "revoke", "block", "unblock", "oppose-emergency", "allow-emergency")
#: Only these open in the browser; anything else (HTML, SVG, XML…) is downloaded.
INLINE_TYPES = ("application/pdf", "text/plain", "image/png", "image/jpeg")
CONTENT_CSP = "default-src 'none'; img-src 'self'; object-src 'self'; frame-ancestors 'none'; base-uri 'none'"

#: The types whose display names the pages look up (the directory, and representatives).
NAMED_TYPES = ("Practitioner", "Organization", "PractitionerRole", "RelatedPerson")

router = APIRouter(include_in_schema=False)

# --------------------------------------------------------------------------- the record


async def _names(api: FhirApi, references: set[str]) -> dict[str, str]:
    """Display names of professionals and establishments (the directory, readable by all)."""
    names: dict[str, str] = {}
    by_type: dict[str, list[str]] = {}
    for ref in references:
        rtype, _, rid = ref.partition("/")
        if rtype in NAMED_TYPES and RESOURCE_ID.fullmatch(rid):
            by_type.setdefault(rtype, []).append(rid)
    for rtype, ids in by_type.items():
        params = [("_id", ",".join(sorted(ids))), ("_count", "100")]
        if rtype == "PractitionerRole":
            params += [
                ("_include", "PractitionerRole:practitioner"),
                ("_include", "PractitionerRole:organization"),
            ]
        try:
            found = await api.search(rtype, params, limit=200)
        except ApiError:
            continue
        for resource in found.matches + list(found.included.values()):
            name = human_name(resource)
            if name:
                names[f"{resource['resourceType']}/{resource['id']}"] = name
        if rtype == "PractitionerRole":
            for role in found.matches:
                who = names.get(str((role.get("practitioner") or {}).get("reference")))
                where = names.get(str((role.get("organization") or {}).get("reference")))
                label = ", ".join(x for x in (who, where) if x)
                if label:
                    names[f"PractitionerRole/{role['id']}"] = label
    return names


@router.get("/dossier")
async def record(request: Request) -> Response:
    session = signed_in(request)
    if isinstance(session, Response):
        return session
    portal = portal_of(request)
    try:
        async with api_for(request, session) as api:
            found = await api.search(
                "DocumentReference",
                [("patient", str(session.patient)), ("status", "current"), ("_count", "100")],
            )
            authors = {
                str(a.get("reference"))
                for doc in found.matches
                for a in doc.get("author") or []
                if a.get("reference") and not a.get("display")
            }
            names = await _names(api, authors)
    except ApiError as exc:
        return api_failure(request, session, exc)
    documents = [document_view(doc, portal.matrix, names) for doc in found.matches]
    return page(
        request, "dossier.html", session, nav="dossier", sections=by_section(documents), count=len(documents)
    )


async def _document(api: FhirApi, doc_id: str) -> dict[str, Any]:
    if not RESOURCE_ID.fullmatch(doc_id):
        raise ApiError(404, "introuvable")
    return await api.read(f"DocumentReference/{doc_id}")


@router.get("/documents/{doc_id}")
async def document(request: Request, doc_id: str) -> Response:
    session = signed_in(request)
    if isinstance(session, Response):
        return session
    portal = portal_of(request)
    try:
        async with api_for(request, session) as api:
            doc = await _document(api, doc_id)
            refs = {str(a.get("reference")) for a in doc.get("author") or [] if a.get("reference")}
            view = document_view(doc, portal.matrix, await _names(api, refs))
            shown = await preview(api, view)
    except ApiError as exc:
        return api_failure(request, session, exc)
    return page(
        request,
        "document.html",
        session,
        nav="dossier",
        doc=view,
        preview=shown,
        inline=view.content_type in INLINE_TYPES,
    )


@router.get("/documents/{doc_id}/contenu")
async def document_content(request: Request, doc_id: str) -> Response:
    session = signed_in(request)
    if isinstance(session, Response):
        return session
    portal = portal_of(request)
    try:
        async with api_for(request, session) as api:
            view = document_view(await _document(api, doc_id), portal.matrix, {})
            if not view.has_content or not view.content_type:
                return error(request, session, 404, "Ce document n'a pas de contenu consultable.")
            data = await content_of(api, view)
    except ApiError as exc:
        return api_failure(request, session, exc)
    assert view.content_type is not None
    inline = view.content_type in INLINE_TYPES and request.query_params.get("telecharger") is None
    extension = {"application/pdf": ".pdf", "text/plain": ".txt", "image/png": ".png", "image/jpeg": ".jpg"}
    filename = f"{doc_id}{extension.get(view.content_type, '.xml' if 'xml' in view.content_type else '.bin')}"
    return Response(
        data,
        media_type=view.content_type,
        headers={
            "Content-Disposition": f'{"inline" if inline else "attachment"}; filename="{filename}"',
            "Content-Security-Policy": CONTENT_CSP,
        },
    )


@router.post("/documents/{doc_id}/masquage")
async def mask(request: Request, doc_id: str) -> Response:
    session = signed_in(request)
    if isinstance(session, Response):
        return session
    form = await checked_form(request, session)
    if form is None:
        return refused(request, session)
    wanted = form.get("action")
    if wanted not in ("masquer", "demasquer"):
        return error(request, session, 400, "Action inconnue.")
    try:
        async with api_for(request, session) as api:
            doc = await _document(api, doc_id)
            operations = mask_patch(doc, wanted == "masquer")
            if operations is not None:
                await api.patch(
                    f"DocumentReference/{doc_id}", operations, (doc.get("meta") or {}).get("versionId")
                )
    except ApiError as exc:
        return api_failure(request, session, exc)
    message = "masque" if wanted == "masquer" else "demasque"
    return RedirectResponse(f"/portal/documents/{doc_id}?message={message}", status_code=303)


# --------------------------------------------------------------------------- who may access


@router.get("/acces")
async def access(request: Request) -> Response:
    session = signed_in(request)
    if isinstance(session, Response):
        return session
    query = (request.query_params.get("recherche") or "").strip()[:80]
    results: list[tuple[str, str, str]] = []
    try:
        async with api_for(request, session) as api:
            consents = await api.search(
                "Consent", [("patient", str(session.patient)), ("status", "active"), ("_count", "100")]
            )
            patient = await api.read(f"Patient/{session.patient}")
            gp_refs = [
                str(g.get("reference"))
                for g in patient.get("generalPractitioner") or []
                if g.get("reference")
            ]
            refs = set(gp_refs)
            for consent in consents.matches:
                for actor in (consent.get("provision") or {}).get("actor") or []:
                    ref = (actor.get("reference") or {}).get("reference")
                    if ref:
                        refs.add(str(ref))
            names = await _names(api, refs)
            if len(query) >= 2:
                for rtype, label in (("Practitioner", "Professionnel"), ("Organization", "Établissement")):
                    found = await api.search(rtype, [("name", query), ("_count", "10")], limit=10)
                    for resource in found.matches:
                        results.append(
                            (f"{rtype}/{resource['id']}", human_name(resource) or resource["id"], label)
                        )
    except ApiError as exc:
        return api_failure(request, session, exc)
    view = access_view(consents.matches, names)
    gps = [names.get(ref, ref) for ref in gp_refs]
    return page(request, "acces.html", session, nav="acces", view=view, gps=gps, query=query, results=results)


@router.post("/acces")
async def change_access(request: Request) -> Response:
    session = signed_in(request)
    if isinstance(session, Response):
        return session
    form = await checked_form(request, session)
    if form is None:
        return refused(request, session)
    action = str(form.get("action") or "")
    actor = str(form.get("acteur") or "")
    if action not in ACTIONS:
        return error(request, session, 400, "Action inconnue.")
    parameters: list[dict[str, Any]] = [{"name": "action", "valueCode": action}]
    if action in ("grant", "revoke", "block", "unblock"):
        if not _ACTOR.fullmatch(actor):
            return error(request, session, 400, "Choisissez un professionnel ou un établissement.")
        parameters.append({"name": "actor", "valueReference": {"reference": actor}})
    try:
        async with api_for(request, session) as api:
            await api.operation(f"Patient/{session.patient}/$dmp-access", parameters)
    except ApiError as exc:
        return api_failure(request, session, exc)
    return RedirectResponse(f"/portal/acces?message={action}", status_code=303)


# --------------------------------------------------------------------------- access history


@router.get("/historique")
async def history(request: Request) -> Response:
    session = signed_in(request)
    if isinstance(session, Response):
        return session
    cursor = request.query_params.get("suite")
    professionals = request.query_params.get("qui") == "professionnels"
    params = [("patient", str(session.patient)), ("_count", "50")]
    if professionals:  # professionals' events carry their profession (agent.role)
        params.append(("agent-role:missing", "false"))
    if cursor:
        params.append(("_cursor", cursor[:500]))
    try:
        async with api_for(request, session) as api:
            trail = await api.search("AuditEvent", params, limit=50)
            emergencies = (
                await api.search(
                    "AuditEvent",
                    [("patient", str(session.patient)), ("purpose", "ETREAT,BTG"), ("_count", "50")],
                    limit=50,
                )
                if not cursor
                else None
            )
            events = trail.matches + (emergencies.matches if emergencies else [])
            refs = {
                str((a.get("who") or {}).get("reference"))
                for e in events
                for a in e.get("agent") or []
                if (a.get("who") or {}).get("reference")
            }
            names = await _names(api, refs)
    except ApiError as exc:
        return api_failure(request, session, exc)
    me = str(session.user)
    following = None
    if trail.next_url:
        following = next(iter(parse_qs(urlsplit(trail.next_url).query).get("_cursor") or []), None)
    return page(
        request,
        "historique.html",
        session,
        nav="historique",
        events=[event_view(e, names, me) for e in trail.matches],
        emergencies=[event_view(e, names, me) for e in emergencies.matches] if emergencies else None,
        following=following,
        professionals=professionals,
    )


# --------------------------------------------------------------------------- closing


@router.get("/fermer")
async def close_page(request: Request) -> Response:
    session = signed_in(request)
    if isinstance(session, Response):
        return session
    return page(request, "fermer.html", session, nav="fermer")


@router.post("/fermer")
async def close(request: Request) -> Response:
    session = signed_in(request)
    if isinstance(session, Response):
        return session
    form = await checked_form(request, session)
    if form is None:
        return refused(request, session)
    if form.get("confirmation") != "oui":
        return page(
            request,
            "fermer.html",
            session,
            status=400,
            nav="fermer",
            error="Cochez la case de confirmation pour fermer le dossier.",
        )
    try:
        async with api_for(request, session) as api:
            await api.operation(f"Patient/{session.patient}/$dmp-close", [])
    except ApiError as exc:
        if exc.status == 409:
            return page(request, "ferme.html", session, nav="fermer", already=True)
        return api_failure(request, session, exc)
    return page(request, "ferme.html", session, nav="fermer", already=False)
