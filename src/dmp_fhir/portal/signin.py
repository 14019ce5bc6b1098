"""Signing in and out: the development form (a sample patient or representative, in
development mode only) and the OpenID Connect authorisation-code flow with PKCE."""

from __future__ import annotations

import time

import jwt
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from ..auth.signing import load_or_create_dev_key, mint_token
from .api import ApiError
from .oidc import SignInError, configured, new_flow, same_state, token_context
from .present import human_name
from .session import FLOW_COOKIE, MAX_SESSION_SECONDS, SESSION_COOKIE, Session
from .state import portal_of, sample_people
from .web import (
    RESOURCE_ID,
    api_for,
    checked_form,
    error,
    page,
    refused,
    secure_cookies,
    session_of,
    set_session,
)

router = APIRouter(include_in_schema=False)


@router.get("/")
async def home(request: Request) -> Response:
    session = session_of(request)
    if session is not None and session.signed_in:
        return RedirectResponse("/portal/dossier", status_code=303)
    portal = portal_of(request)
    people = sample_people(portal.settings) if portal.settings.dev_mode else ([], [])
    return page(
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
        async with api_for(request, probe) as api:
            record = await api.read(f"Patient/{patient}")
            user_name = human_name(await api.read(user)) if user.startswith("RelatedPerson/") else None
    except ApiError as exc:
        if exc.status in (401, 403, 404):
            return error(request, None, 403, f"Ce compte n'ouvre pas ce dossier : {exc.message}")
        return error(request, None, 502, "Le dossier ne peut pas être ouvert pour l'instant.")
    session = Session(
        token=token,
        patient=patient,
        user=user,
        holder=human_name(record),
        user_name=user_name,
        expires=min(expires, time.time() + MAX_SESSION_SECONDS),
    )
    response = RedirectResponse("/portal/dossier", status_code=303)
    set_session(request, response, session)
    return response


@router.post("/auth/dev")
async def dev_sign_in(request: Request) -> Response:
    portal = portal_of(request)
    if not portal.settings.dev_mode:
        return error(request, None, 404, "Page introuvable.")
    session = session_of(request)
    form = await checked_form(request, session)
    if form is None:
        return refused(request, session)
    choice = str(form.get("choix") or "")
    parts = choice.split(":")
    if len(parts) == 2 and parts[0] == "patient":
        patient, user = parts[1], f"Patient/{parts[1]}"
    elif len(parts) == 3 and parts[0] == "representant":
        patient, user = parts[2], f"RelatedPerson/{parts[1]}"
    else:
        return error(request, session, 400, "Choisissez un patient ou un représentant légal.")
    if not RESOURCE_ID.fullmatch(patient) or not RESOURCE_ID.fullmatch(user.split("/", 1)[1]):
        return error(request, session, 400, "Identifiant invalide.")
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
        return error(request, None, 404, "La connexion par fournisseur d'identité n'est pas configurée.")
    flow = new_flow()
    try:
        url = await portal.oidc.authorization_url(flow)
    except SignInError as exc:
        return error(request, None, 502, str(exc))
    response = RedirectResponse(url, status_code=302)
    response.set_cookie(
        FLOW_COOKIE,
        portal.codec.seal_flow(flow),
        max_age=600,
        path="/portal/auth",
        httponly=True,
        secure=secure_cookies(request, portal),
        samesite="lax",  # the provider's redirect back is a cross-site top-level navigation
    )
    return response


@router.get("/auth/callback")
async def oidc_callback(request: Request) -> Response:
    portal = portal_of(request)
    if not configured(portal.settings):
        return error(request, None, 404, "La connexion par fournisseur d'identité n'est pas configurée.")
    flow = portal.codec.flow(request.cookies.get(FLOW_COOKIE))
    params = request.query_params
    if not same_state(flow, params.get("state")):
        response = error(
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
        response = error(request, None, 400, "Le fournisseur d'identité n'a pas accordé la connexion.")
        response.delete_cookie(FLOW_COOKIE, path="/portal/auth")
        return response
    try:
        tokens = await portal.oidc.exchange(flow, str(params["code"]))
        patient, user = token_context(tokens)
    except SignInError as exc:
        response = error(request, None, 400, str(exc))
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
    session = session_of(request)
    if await checked_form(request, session) is None:
        return refused(request, session)
    # A patient on a shared computer must leave no session behind: not ours (the cookie), nor
    # the provider's, which would sign the next person in without a password. The provider's
    # logout is reached from a page of ours (a form may only post to us: CSP form-action 'self',
    # which browsers apply to a form's redirects too).
    portal = portal_of(request)
    provider_logout = await portal.oidc.logout_url() if configured(portal.settings) else None
    response: Response
    if provider_logout is None:
        response = RedirectResponse("/portal/?message=deconnecte", status_code=303)
    else:
        response = portal.templates.TemplateResponse(
            request,
            "deconnexion.html",
            {"session": None, "nav": None, "message": None, "provider_logout": provider_logout},
        )
    response.delete_cookie(SESSION_COOKIE, path="/portal")
    return response
