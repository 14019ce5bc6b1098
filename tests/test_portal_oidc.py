"""The portal's OpenID Connect sign-in, end to end over real HTTP: the authorisation-code flow
with PKCE against tests/oidc_provider.py, on a server in production mode (no development
tokens) whose API verifies the provider's access tokens like any others."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from dmp_fhir.portal.oidc import pkce_challenge
from dmp_fhir.portal.session import SESSION_COOKIE

from .live_server import LiveServer, live_server
from .oidc_provider import Provider, oidc_provider
from .portal_browser import Browser, chromium, csrf_of, load_samples, open_browser

__all__ = ["chromium"]  # a fixture this module uses

AUDIENCE = "https://dmp-fhir.example/fhir"


@pytest.fixture(scope="module")
def idp() -> Iterator[Provider]:
    with oidc_provider(AUDIENCE) as provider:
        yield provider


@pytest.fixture(scope="module")
def server(mongodb_url: str, tmp_path_factory: pytest.TempPathFactory, idp: Provider) -> Iterator[LiveServer]:
    tmp: Path = tmp_path_factory.mktemp("oidc")
    with live_server(
        mongodb_url,
        tmp,
        dev_mode=False,
        issuer=idp.issuer,
        audience=AUDIENCE,
        jwks_file=idp.write_jwks(tmp / "jwks.json"),
        portal_oidc_issuer=idp.issuer,
        portal_session_key="a secret shared by the server processes",
    ) as live:
        load_samples(mongodb_url, live)
        yield live


def origin(server: LiveServer) -> str:
    return server.base_url.rsplit("/fhir", 1)[0]


def sign_in(server: LiveServer, web: httpx.Client) -> httpx.Response:
    """The browser's part of the flow, one redirect at a time."""
    login = web.get("/portal/auth/login")
    assert login.status_code == 302
    authorize = httpx.get(login.headers["location"])
    assert authorize.status_code == 302, authorize.text
    callback = authorize.headers["location"]
    assert callback.startswith(f"{origin(server)}/portal/auth/callback?")
    return web.get(callback)


def test_sign_in_with_the_provider(server: LiveServer, idp: Provider) -> None:
    idp.user, idp.patient = "Patient/pat-001", "pat-001"
    with httpx.Client(base_url=origin(server)) as web:
        assert "Mode développement" not in web.get("/portal/").text
        done = sign_in(server, web)
        assert done.status_code == 200 and 'content="0;url=/portal/dossier"' in done.text
        request = idp.token_requests[-1]
        assert request["grant_type"] == "authorization_code" and request["client_id"] == "dmp-patient-portal"
        assert len(request["code_verifier"]) >= 43
        assert request["redirect_uri"] == f"{origin(server)}/portal/auth/callback"
        page = web.get("/portal/dossier")
        assert page.status_code == 200
        assert "Jeanne DUPUIS" in page.text and page.text.count('class="document"') == 7
        # the API took the provider's token as the patient's own: the audit trail names her
        history = web.get("/portal/historique")
        assert "Vous" in history.text


def test_signing_out_ends_the_providers_session_too(server: LiveServer, idp: Provider) -> None:
    """On a shared computer the next person must not be signed in by the provider's session:
    sign-out clears the portal's cookie, then sends the browser to the provider's end-session
    endpoint (from a page of ours: a form may only post to the portal), which comes back."""
    with httpx.Client(base_url=origin(server)) as web:
        assert sign_in(server, web).status_code == 200
        page = web.get("/portal/dossier")
        form = {"csrf": csrf_of(page.text)}
        out = web.post("/portal/auth/logout", data=form, headers={"Origin": origin(server)})
        assert out.status_code == 200, out.text
        assert SESSION_COOKIE not in web.cookies  # our session is gone at once
        refresh = re.search(r'http-equiv="refresh" content="0;url=([^"]+)"', out.text)
        assert refresh is not None
        provider_logout = html.unescape(refresh.group(1))
        assert f'href="{refresh.group(1)}"' in out.text  # and a link, for a browser without refresh
        assert provider_logout.startswith(f"{idp.issuer}/logout?")
        query = parse_qs(urlsplit(provider_logout).query)
        back = f"{origin(server)}/portal/?message=deconnecte"
        assert query == {"client_id": ["dmp-patient-portal"], "post_logout_redirect_uri": [back]}
        ended = httpx.get(provider_logout)
        assert ended.status_code == 302 and ended.headers["location"] == back
        assert idp.logouts[-1]["post_logout_redirect_uri"] == back
        assert web.get(back).status_code == 200
        assert web.get("/portal/dossier").status_code == 303  # signed out: back to the home page


def test_a_representative_signs_in_to_the_minors_record(server: LiveServer, idp: Provider) -> None:
    idp.user, idp.patient = "RelatedPerson/rp-020-pere", "pat-020"
    try:
        with httpx.Client(base_url=origin(server)) as web:
            assert sign_in(server, web).status_code == 200
            page = web.get("/portal/dossier")
            assert "représentant légal" in page.text and "Léa FONTAINE" in page.text
            assert "doc-020-contraception" not in page.text
    finally:
        idp.user, idp.patient = "Patient/pat-001", "pat-001"


def test_an_id_token_for_another_sign_in_is_refused(server: LiveServer, idp: Provider) -> None:
    idp.forged_nonce = "someone-elses-nonce"
    try:
        with httpx.Client(base_url=origin(server)) as web:
            refused = sign_in(server, web)
            assert refused.status_code == 400 and "ne correspond pas à cette connexion" in refused.text
            assert web.get("/portal/dossier").status_code == 303
    finally:
        idp.forged_nonce = None


def test_an_id_token_signed_by_another_key_is_refused(server: LiveServer, idp: Provider) -> None:
    idp.rogue_key = ec.generate_private_key(ec.SECP256R1())
    try:
        with httpx.Client(base_url=origin(server)) as web:
            refused = sign_in(server, web)
            assert refused.status_code == 400 and "n&#39;est pas valide" in refused.text
            assert web.get("/portal/dossier").status_code == 303
    finally:
        idp.rogue_key = None


def test_a_code_is_exchanged_once_only(server: LiveServer) -> None:
    with httpx.Client(base_url=origin(server)) as web:
        login = web.get("/portal/auth/login")
        callback = httpx.get(login.headers["location"]).headers["location"]
        assert web.get(callback).status_code == 200
    with httpx.Client(base_url=origin(server)) as other:
        other.get("/portal/auth/login")  # a flow of its own, but someone else's code and state
        assert other.get(callback).status_code == 400
        assert SESSION_COOKIE not in other.cookies or "Se déconnecter" not in other.get("/portal/").text


def test_the_provider_refuses_a_wrong_verifier(server: LiveServer, idp: Provider) -> None:
    """The PKCE binding, seen from the provider: the challenge sent is S256 of the verifier
    the portal keeps, and a code sent with another verifier gets nothing."""
    with httpx.Client(base_url=origin(server)) as web:
        login = web.get("/portal/auth/login")
        authorize = httpx.get(login.headers["location"])
        code = httpx.URL(authorize.headers["location"]).params["code"]
        grant: dict[str, Any] = idp.codes[code]
        flow = server_flow(server, web)
        assert grant["challenge"] == pkce_challenge(flow)
        stolen = httpx.post(
            f"{idp.issuer}/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "client_id": "dmp-patient-portal",
                "redirect_uri": grant["redirect_uri"],
                "code_verifier": "x" * 43,
            },
        )
        assert stolen.status_code == 400


def server_flow(server: LiveServer, web: httpx.Client) -> str:
    """The verifier sealed in the flow cookie, opened with a codec holding the server's key."""
    from dmp_fhir.portal.session import FLOW_COOKIE, Codec

    codec = Codec(server.settings.portal_session_key)
    flow = codec.flow(web.cookies.get(FLOW_COOKIE))
    assert flow is not None
    return flow.verifier


def test_sign_in_in_a_browser(server: LiveServer, chromium: Any) -> None:
    for browser in open_browser(chromium, server, "oidc"):
        run_browser_sign_in(browser)


def run_browser_sign_in(browser: Browser) -> None:
    browser.goto("/portal/")
    browser.check("connexion")
    browser.page.get_by_role("link", name="Se connecter").click()
    browser.page.wait_for_url("**/portal/dossier")
    assert browser.page.locator("li.document").count() == 7
    browser.check("dossier")
    browser.goto("/portal/documents/doc-001-bio")  # a CDA: its narrative sections on the page
    assert browser.page.locator("section[aria-labelledby='t-contenu'] h3").count() >= 1
    browser.check("document-cda")
