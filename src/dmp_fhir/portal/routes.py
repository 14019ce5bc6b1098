"""The portal's pages (server-rendered, French) and its few form posts.

Every state-changing request is a POST carrying the session's CSRF token (and, when the
browser sends one, an ``Origin`` of this site); every read or write of patient data goes
through ``FhirApi`` with the signed-in person's token.
"""

from __future__ import annotations

import hmac
import re
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from ..auth.signing import load_or_create_dev_key, mint_token
from .api import ApiError, FhirApi
from .content import content_of, preview
from .oidc import SignInError, configured, new_flow, same_state, token_context
from .present import (
    access_view,
    by_section,
    document_view,
    event_view,
    human_name,
    mask_patch,
)
from .session import FLOW_COOKIE, MAX_SESSION_SECONDS, SESSION_COOKIE, Session
from .state import Portal, portal_of, sample_people

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_ACTOR = re.compile(r"(Practitioner|PractitionerRole|Organization)/[A-Za-z0-9\-.]{1,64}")
ACTIONS = ("grant", "revoke", "block", "unblock", "oppose-emergency", "allow-emergency")
#: Only these open in the browser; anything else (HTML, SVG, XML…) is downloaded.
INLINE_TYPES = ("application/pdf", "text/plain", "image/png", "image/jpeg")
CONTENT_CSP = "default-src 'none'; img-src 'self'; object-src 'self'; frame-ancestors 'none'; base-uri 'none'"
MESSAGES = {
    "masque": "Le document est masqué aux professionnels de santé.",
    "demasque": "Le document n'est plus masqué.",
    "grant": "Le professionnel ou l'établissement est autorisé.",
    "revoke": "L'autorisation est retirée.",
    "block": "Le professionnel ou l'établissement est bloqué : il ne peut plus accéder au dossier.",
    "unblock": "Le blocage est levé.",
    "oppose-emergency": "L'accès en urgence (bris de glace) est refusé.",
    "allow-emergency": "L'accès en urgence (bris de glace) est de nouveau permis.",
    "expire": "Votre session a expiré : connectez-vous de nouveau.",
    "deconnecte": "Vous êtes déconnecté.",
}

router = APIRouter(include_in_schema=False)


# --------------------------------------------------------------------------- plumbing


def _session(request: Request) -> Session | None:
    return portal_of(request).codec.session(request.cookies.get(SESSION_COOKIE))


def _secure(request: Request, portal: Portal) -> bool:
    if portal.settings.portal_cookie_secure is not None:
        return portal.settings.portal_cookie_secure
    return portal.settings.base_url.startswith("https:") or request.url.scheme == "https"


def _set_session(request: Request, response: Response, session: Session) -> None:
    portal = portal_of(request)
    response.set_cookie(
        SESSION_COOKIE,
        portal.codec.seal_session(session),
        max_age=max(1, int(session.expires - time.time())),
        path="/portal",
        httponly=True,
        secure=_secure(request, portal),
        samesite="strict",
    )


def _page(
    request: Request,
    template: str,
    session: Session | None,
    *,
    status: int = 200,
    nav: str | None = None,
    **context: Any,
) -> Response:
    """Render a page; a visitor without a session gets an anonymous one (it carries the CSRF
    token of the sign-in form)."""
    fresh = session is None
    session = session or Session()
    message = request.query_params.get("message")
    response = portal_of(request).templates.TemplateResponse(
        request,
        template,
        {"session": session, "nav": nav, "message": MESSAGES.get(message or ""), **context},
        status_code=status,
    )
    if fresh:
        _set_session(request, response, session)
    return response


def _error(request: Request, session: Session | None, status: int, text: str) -> Response:
    return _page(request, "erreur.html", session, status=status, error=text)


def _api(request: Request, session: Session) -> FhirApi:
    assert session.token is not None
    return FhirApi(request.app, portal_of(request).settings.base_url, session.token)


def _signed_in(request: Request) -> Session | Response:
    session = _session(request)
    if session is None or not session.signed_in:
        return RedirectResponse("/portal/", status_code=303)
    return session


def _api_failure(request: Request, session: Session, exc: ApiError) -> Response:
    if exc.status == 401:
        response = RedirectResponse("/portal/?message=expire", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/portal")
        return response
    if exc.status == 404:
        return _error(request, session, 404, "Ce document ou cette ressource est introuvable.")
    return _error(request, session, exc.status if exc.status < 500 else 502, exc.message)


async def _form(request: Request, session: Session | None) -> FormData | None:
    """The posted form, or None when its CSRF token or its origin is wrong."""
    origin = request.headers.get("origin")
    if origin is not None:
        own = {f"{request.url.scheme}://{request.url.netloc}"}
        base = urlsplit(portal_of(request).settings.base_url)
        own.add(f"{base.scheme}://{base.netloc}")
        if origin not in own:
            return None
    form = await request.form()
    token = form.get("csrf")
    if session is None or not isinstance(token, str) or not hmac.compare_digest(token, session.csrf):
        return None
    return form


def _refused(request: Request, session: Session | None) -> Response:
    return _error(
        request,
        session,
        403,
        "La demande n'a pas pu être vérifiée (jeton de sécurité absent ou périmé). "
        "Rechargez la page et recommencez.",
    )


# --------------------------------------------------------------------------- sign-in


@router.get("/")
async def home(request: Request) -> Response:
    session = _session(request)
    if session is not None and session.signed_in:
        return RedirectResponse("/portal/dossier", status_code=303)
    portal = portal_of(request)
    people = sample_people(portal.settings) if portal.settings.dev_mode else ([], [])
    return _page(
        request,
        "connexion.html",
        session,
        dev=portal.settings.dev_mode,
        oidc=configured(portal.settings),
        patients=people[0],
        representatives=people[1],
    )


async def _start_session(request: Request, token: str, patient: str, user: str, expires: float) -> Response:
    """Check the token against the API (it must open this record), then open the session."""
    probe = Session(token=token, patient=patient, user=user)
    try:
        async with _api(request, probe) as api:
            record = await api.read(f"Patient/{patient}")
            user_name = human_name(await api.read(user)) if user.startswith("RelatedPerson/") else None
    except ApiError as exc:
        if exc.status in (401, 403, 404):
            return _error(request, None, 403, f"Ce compte n'ouvre pas ce dossier : {exc.message}")
        return _error(request, None, 502, "Le dossier ne peut pas être ouvert pour l'instant.")
    session = Session(
        token=token,
        patient=patient,
        user=user,
        holder=human_name(record),
        user_name=user_name,
        expires=min(expires, time.time() + MAX_SESSION_SECONDS),
    )
    response = RedirectResponse("/portal/dossier", status_code=303)
    _set_session(request, response, session)
    return response


@router.post("/auth/dev")
async def dev_sign_in(request: Request) -> Response:
    portal = portal_of(request)
    if not portal.settings.dev_mode:
        return _error(request, None, 404, "Page introuvable.")
    session = _session(request)
    form = await _form(request, session)
    if form is None:
        return _refused(request, session)
    choice = str(form.get("choix") or "")
    parts = choice.split(":")
    if len(parts) == 2 and parts[0] == "patient":
        patient, user = parts[1], f"Patient/{parts[1]}"
    elif len(parts) == 3 and parts[0] == "representant":
        patient, user = parts[2], f"RelatedPerson/{parts[1]}"
    else:
        return _error(request, session, 400, "Choisissez un patient ou un représentant légal.")
    if not _ID.fullmatch(patient) or not _ID.fullmatch(user.split("/", 1)[1]):
        return _error(request, session, 400, "Identifiant invalide.")
    key = load_or_create_dev_key(portal.settings.dev_key_file)
    lifetime = 3600
    token = mint_token(
        {"fhirUser": user, "patient": patient, "scope": "patient/*.cruds", "client_id": "dmp-patient-portal"},
        key=key,
        issuer=portal.settings.issuer,
        audience=portal.settings.token_audience,
        lifetime_s=lifetime,
    )
    return await _start_session(request, token, patient, user, time.time() + lifetime - 30)


@router.get("/auth/login")
async def oidc_login(request: Request) -> Response:
    portal = portal_of(request)
    if not configured(portal.settings):
        return _error(request, None, 404, "La connexion par fournisseur d'identité n'est pas configurée.")
    flow = new_flow()
    try:
        url = await portal.oidc.authorization_url(flow)
    except SignInError as exc:
        return _error(request, None, 502, str(exc))
    response = RedirectResponse(url, status_code=302)
    response.set_cookie(
        FLOW_COOKIE,
        portal.codec.seal_flow(flow),
        max_age=600,
        path="/portal/auth",
        httponly=True,
        secure=_secure(request, portal),
        samesite="lax",  # the provider's redirect back is a cross-site top-level navigation
    )
    return response


@router.get("/auth/callback")
async def oidc_callback(request: Request) -> Response:
    portal = portal_of(request)
    if not configured(portal.settings):
        return _error(request, None, 404, "La connexion par fournisseur d'identité n'est pas configurée.")
    flow = portal.codec.flow(request.cookies.get(FLOW_COOKIE))
    params = request.query_params
    if not same_state(flow, params.get("state")):
        response = _error(
            request,
            None,
            400,
            "La connexion a échoué : la réponse ne correspond à aucune "
            "connexion en cours. Recommencez depuis la page d'accueil.",
        )
        response.delete_cookie(FLOW_COOKIE, path="/portal/auth")
        return response
    assert flow is not None
    if params.get("error") or not params.get("code"):
        response = _error(request, None, 400, "Le fournisseur d'identité n'a pas accordé la connexion.")
        response.delete_cookie(FLOW_COOKIE, path="/portal/auth")
        return response
    try:
        tokens = await portal.oidc.exchange(flow, str(params["code"]))
        patient, user = token_context(tokens)
    except SignInError as exc:
        response = _error(request, None, 400, str(exc))
        response.delete_cookie(FLOW_COOKIE, path="/portal/auth")
        return response
    access = str(tokens["access_token"])
    try:
        expires = float(jwt.decode(access, options={"verify_signature": False}).get("exp", 0))
    except jwt.PyJWTError:
        expires = 0
    expires = expires or time.time() + float(tokens.get("expires_in") or 300)
    started = await _start_session(request, access, patient, user, expires)
    if started.status_code != 303:
        return started
    # The session cookie is SameSite=Strict: a redirect inside the provider's cross-site chain
    # would arrive without it. A page of our own that moves on makes the next request same-site.
    response = portal.templates.TemplateResponse(
        request, "connecte.html", {"session": None, "nav": None, "message": None}
    )
    for key, value in started.raw_headers:
        if key == b"set-cookie":
            response.raw_headers.append((key, value))
    response.delete_cookie(FLOW_COOKIE, path="/portal/auth")
    return response


@router.post("/auth/logout")
async def sign_out(request: Request) -> Response:
    session = _session(request)
    if await _form(request, session) is None:
        return _refused(request, session)
    response = RedirectResponse("/portal/?message=deconnecte", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/portal")
    return response


# --------------------------------------------------------------------------- the record


async def _names(api: FhirApi, references: set[str]) -> dict[str, str]:
    """Display names of professionals and establishments (the directory, readable by all)."""
    names: dict[str, str] = {}
    by_type: dict[str, list[str]] = {}
    for ref in references:
        rtype, _, rid = ref.partition("/")
        if rtype in ("Practitioner", "Organization", "PractitionerRole", "RelatedPerson") and _ID.fullmatch(
            rid
        ):
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
    session = _signed_in(request)
    if isinstance(session, Response):
        return session
    portal = portal_of(request)
    try:
        async with _api(request, session) as api:
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
        return _api_failure(request, session, exc)
    documents = [document_view(doc, portal.matrix, names) for doc in found.matches]
    return _page(
        request, "dossier.html", session, nav="dossier", sections=by_section(documents), count=len(documents)
    )


async def _document(api: FhirApi, doc_id: str) -> dict[str, Any]:
    if not _ID.fullmatch(doc_id):
        raise ApiError(404, "introuvable")
    return await api.read(f"DocumentReference/{doc_id}")


@router.get("/documents/{doc_id}")
async def document(request: Request, doc_id: str) -> Response:
    session = _signed_in(request)
    if isinstance(session, Response):
        return session
    portal = portal_of(request)
    try:
        async with _api(request, session) as api:
            doc = await _document(api, doc_id)
            refs = {str(a.get("reference")) for a in doc.get("author") or [] if a.get("reference")}
            view = document_view(doc, portal.matrix, await _names(api, refs))
            shown = await preview(api, view)
    except ApiError as exc:
        return _api_failure(request, session, exc)
    return _page(
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
    session = _signed_in(request)
    if isinstance(session, Response):
        return session
    portal = portal_of(request)
    try:
        async with _api(request, session) as api:
            view = document_view(await _document(api, doc_id), portal.matrix, {})
            if not view.has_content or not view.content_type:
                return _error(request, session, 404, "Ce document n'a pas de contenu consultable.")
            data = await content_of(api, view)
    except ApiError as exc:
        return _api_failure(request, session, exc)
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
    session = _signed_in(request)
    if isinstance(session, Response):
        return session
    form = await _form(request, session)
    if form is None:
        return _refused(request, session)
    wanted = form.get("action")
    if wanted not in ("masquer", "demasquer"):
        return _error(request, session, 400, "Action inconnue.")
    try:
        async with _api(request, session) as api:
            doc = await _document(api, doc_id)
            operations = mask_patch(doc, wanted == "masquer")
            if operations is not None:
                await api.patch(
                    f"DocumentReference/{doc_id}", operations, (doc.get("meta") or {}).get("versionId")
                )
    except ApiError as exc:
        return _api_failure(request, session, exc)
    message = "masque" if wanted == "masquer" else "demasque"
    return RedirectResponse(f"/portal/documents/{doc_id}?message={message}", status_code=303)


# --------------------------------------------------------------------------- who may access


@router.get("/acces")
async def access(request: Request) -> Response:
    session = _signed_in(request)
    if isinstance(session, Response):
        return session
    query = (request.query_params.get("recherche") or "").strip()[:80]
    results: list[tuple[str, str, str]] = []
    try:
        async with _api(request, session) as api:
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
        return _api_failure(request, session, exc)
    view = access_view(consents.matches, names)
    gps = [names.get(ref, ref) for ref in gp_refs]
    return _page(
        request, "acces.html", session, nav="acces", view=view, gps=gps, query=query, results=results
    )


@router.post("/acces")
async def change_access(request: Request) -> Response:
    session = _signed_in(request)
    if isinstance(session, Response):
        return session
    form = await _form(request, session)
    if form is None:
        return _refused(request, session)
    action = str(form.get("action") or "")
    actor = str(form.get("acteur") or "")
    if action not in ACTIONS:
        return _error(request, session, 400, "Action inconnue.")
    parameters: list[dict[str, Any]] = [{"name": "action", "valueCode": action}]
    if action in ("grant", "revoke", "block", "unblock"):
        if not _ACTOR.fullmatch(actor):
            return _error(request, session, 400, "Choisissez un professionnel ou un établissement.")
        parameters.append({"name": "actor", "valueReference": {"reference": actor}})
    try:
        async with _api(request, session) as api:
            await api.operation(f"Patient/{session.patient}/$dmp-access", parameters)
    except ApiError as exc:
        return _api_failure(request, session, exc)
    return RedirectResponse(f"/portal/acces?message={action}", status_code=303)


# --------------------------------------------------------------------------- access history


@router.get("/historique")
async def history(request: Request) -> Response:
    session = _signed_in(request)
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
        async with _api(request, session) as api:
            page = await api.search("AuditEvent", params, limit=50)
            emergencies = (
                await api.search(
                    "AuditEvent",
                    [("patient", str(session.patient)), ("purpose", "ETREAT,BTG"), ("_count", "50")],
                    limit=50,
                )
                if not cursor
                else None
            )
            events = page.matches + (emergencies.matches if emergencies else [])
            refs = {
                str((a.get("who") or {}).get("reference"))
                for e in events
                for a in e.get("agent") or []
                if (a.get("who") or {}).get("reference")
            }
            names = await _names(api, refs)
    except ApiError as exc:
        return _api_failure(request, session, exc)
    me = str(session.user)
    following = None
    if page.next_url:
        following = next(iter(parse_qs(urlsplit(page.next_url).query).get("_cursor") or []), None)
    return _page(
        request,
        "historique.html",
        session,
        nav="historique",
        events=[event_view(e, names, me) for e in page.matches],
        emergencies=[event_view(e, names, me) for e in emergencies.matches] if emergencies else None,
        following=following,
        professionals=professionals,
    )


# --------------------------------------------------------------------------- closing


@router.get("/fermer")
async def close_page(request: Request) -> Response:
    session = _signed_in(request)
    if isinstance(session, Response):
        return session
    return _page(request, "fermer.html", session, nav="fermer")


@router.post("/fermer")
async def close(request: Request) -> Response:
    session = _signed_in(request)
    if isinstance(session, Response):
        return session
    form = await _form(request, session)
    if form is None:
        return _refused(request, session)
    if form.get("confirmation") != "oui":
        return _page(
            request,
            "fermer.html",
            session,
            status=400,
            nav="fermer",
            error="Cochez la case de confirmation pour fermer le dossier.",
        )
    try:
        async with _api(request, session) as api:
            await api.operation(f"Patient/{session.patient}/$dmp-close", [])
    except ApiError as exc:
        if exc.status == 409:
            return _page(request, "ferme.html", session, nav="fermer", already=True)
        return _api_failure(request, session, exc)
    return _page(request, "ferme.html", session, nav="fermer", already=False)
