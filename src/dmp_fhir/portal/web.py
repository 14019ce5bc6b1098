"""What every portal page shares: the session cookie, rendering, CSRF and Origin checks, and
how API refusals become pages.

Every state-changing request is a POST carrying the session's CSRF token (and, when the
browser sends one, an ``Origin`` of this site); every read or write of patient data goes
through ``FhirApi`` with the signed-in person's token.
"""

from __future__ import annotations

import hmac
import re
import time
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from .api import ApiError, FhirApi
from .session import SESSION_COOKIE, Session
from .state import Portal, portal_of

#: A FHIR id as this portal accepts it in its own URLs and forms.
RESOURCE_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
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


def session_of(request: Request) -> Session | None:
    return portal_of(request).codec.session(request.cookies.get(SESSION_COOKIE))


def secure_cookies(request: Request, portal: Portal) -> bool:
    if portal.settings.portal_cookie_secure is not None:
        return portal.settings.portal_cookie_secure
    return portal.settings.base_url.startswith("https:") or request.url.scheme == "https"


def set_session(request: Request, response: Response, session: Session) -> None:
    portal = portal_of(request)
    response.set_cookie(
        SESSION_COOKIE,
        portal.codec.seal_session(session),
        max_age=max(1, int(session.expires - time.time())),
        path="/portal",
        httponly=True,
        secure=secure_cookies(request, portal),
        samesite="strict",
    )


def page(
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
        set_session(request, response, session)
    return response


def error(request: Request, session: Session | None, status: int, text: str) -> Response:
    return page(request, "erreur.html", session, status=status, error=text)


def api_for(request: Request, session: Session) -> FhirApi:
    assert session.token is not None
    return FhirApi(request.app, portal_of(request).settings.base_url, session.token)


def signed_in(request: Request) -> Session | Response:
    session = session_of(request)
    if session is None or not session.signed_in:
        return RedirectResponse("/portal/", status_code=303)
    return session


def api_failure(request: Request, session: Session, exc: ApiError) -> Response:
    if exc.status == 401:
        response = RedirectResponse("/portal/?message=expire", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/portal")
        return response
    if exc.status == 404:
        return error(request, session, 404, "Ce document ou cette ressource est introuvable.")
    return error(request, session, exc.status if exc.status < 500 else 502, exc.message)


async def checked_form(request: Request, session: Session | None) -> FormData | None:
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
    if (
        session is None
        or not isinstance(token, str)
        or not hmac.compare_digest(token.encode(), session.csrf.encode())
    ):
        return None
    return form


def refused(request: Request, session: Session | None) -> Response:
    return error(
        request,
        session,
        403,
        "La demande n'a pas pu être vérifiée (jeton de sécurité absent ou périmé). "
        "Rechargez la page et recommencez.",
    )
