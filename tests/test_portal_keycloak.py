"""The patient portal signs in through a real Keycloak (issues 17 and 19 together).

The realm of ``docker-compose.yml`` (``deploy/keycloak/dmp-realm.json``) has the public client
``dmp-patient-portal`` (authorization code + PKCE S256). The server runs as compose runs it:
development tokens off, the API trusting the realm's JWKS, the portal pointed at the realm. The
browser's part is played with plain HTTP: the portal's redirect, Keycloak's sign-in form, the
callback; the record then shows through the API with the patient's Keycloak token.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .keycloak_server import AUDIENCE, PASSWORD, Keycloak
from .live_server import LiveServer, live_server
from .portal_browser import load_samples

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(
    mongodb_url: str, keycloak: Keycloak, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    tmp: Path = tmp_path_factory.mktemp("portal-keycloak")
    with live_server(
        mongodb_url,
        tmp,
        dev_mode=False,
        issuer=keycloak.issuer,
        audience=AUDIENCE,
        jwks_url=keycloak.jwks_url,
        portal_oidc_issuer=keycloak.issuer,
        portal_session_key="a secret shared by the server processes",
    ) as live:
        load_samples(mongodb_url, live)
        yield live


def sign_in(server: LiveServer, web: httpx.Client, username: str, password: str = PASSWORD) -> httpx.Response:
    login = web.get("/portal/auth/login")
    assert login.status_code == 302, login.text
    with httpx.Client(follow_redirects=False, timeout=30) as browser:  # Keycloak's own cookies
        form = browser.get(login.headers["location"])
        assert form.status_code == 200 and "kc-form-login" in form.text, form.text[:500]
        action = re.search(r'<form[^>]*id="kc-form-login"[^>]*action="([^"]+)"', form.text)
        assert action is not None
        # Keycloak marks its cookies Secure; a browser keeps them for a loopback origin, httpx
        # does not over http: hand them back as the browser would.
        cookies = "; ".join(c.split(";", 1)[0] for c in form.headers.get_list("set-cookie"))
        signed = browser.post(
            html.unescape(action.group(1)),
            data={"username": username, "password": password, "credentialId": ""},
            headers={"Cookie": cookies},
        )
    if signed.status_code != 302:
        return signed  # Keycloak said no (its page)
    callback = signed.headers["location"]
    assert callback.startswith(server.base_url.rsplit("/fhir", 1)[0] + "/portal/auth/callback?")
    return web.get(callback)


def test_a_patient_signs_in_with_keycloak_and_sees_their_record(server: LiveServer) -> None:
    with httpx.Client(base_url=server.base_url.rsplit("/fhir", 1)[0], timeout=30) as web:
        done = sign_in(server, web, "jeanne.dupuis")
        assert done.status_code == 200 and 'content="0;url=/portal/dossier"' in done.text, done.text[:500]
        page = web.get("/portal/dossier")
        assert page.status_code == 200
        assert "Jeanne DUPUIS" in page.text and page.text.count('class="document"') == 7
        assert "Vous" in web.get("/portal/historique").text  # the API took Keycloak's token as hers


def test_a_wrong_password_opens_no_session(server: LiveServer) -> None:
    with httpx.Client(base_url=server.base_url.rsplit("/fhir", 1)[0], timeout=30) as web:
        refused = sign_in(server, web, "jeanne.dupuis", "not-her-password")
        assert refused.status_code == 200 and "kc-form-login" in refused.text  # Keycloak asks again
        assert web.get("/portal/dossier").status_code == 303  # back to sign-in
