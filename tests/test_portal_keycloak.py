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
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest

from .keycloak_server import AUDIENCE, PASSWORD, Keycloak
from .live_server import LiveServer, live_server
from .portal_browser import csrf_of, load_samples

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


def test_signing_out_ends_the_keycloak_session(server: LiveServer) -> None:
    """Without the provider's logout, the next person at this browser would be signed in by
    Keycloak's SSO cookie without a password. After the portal's sign-out, they are asked again."""
    portal = server.base_url.rsplit("/fhir", 1)[0]
    with (
        httpx.Client(base_url=portal, timeout=30) as web,
        httpx.Client(follow_redirects=False, timeout=30) as browser,
    ):
        jar: dict[str, str] = {}  # Keycloak's cookies, kept as a browser keeps them (see sign_in)

        def keycloak(method: str, url: str, **kwargs: Any) -> httpx.Response:
            cookie = "; ".join(f"{k}={v}" for k, v in jar.items())
            answer = browser.request(method, url, headers={"Cookie": cookie}, **kwargs)
            for header in answer.headers.get_list("set-cookie"):
                name, _, rest = header.partition("=")
                value = rest.split(";", 1)[0]
                if value and "Max-Age=0" not in header:
                    jar[name] = value
                else:
                    jar.pop(name, None)
            return answer

        def login_page() -> httpx.Response:
            login = web.get("/portal/auth/login")
            assert login.status_code == 302, login.text
            return keycloak("GET", login.headers["location"])

        form = login_page()
        assert form.status_code == 200 and "kc-form-login" in form.text
        action = re.search(r'<form[^>]*id="kc-form-login"[^>]*action="([^"]+)"', form.text)
        assert action is not None
        signed = keycloak(
            "POST",
            html.unescape(action.group(1)),
            data={"username": "jeanne.dupuis", "password": PASSWORD, "credentialId": ""},
        )
        assert signed.status_code == 302
        assert web.get(signed.headers["location"]).status_code == 200
        again = login_page()  # Keycloak's session is alive: straight back, no password asked
        assert again.status_code == 302 and "/portal/auth/callback?" in again.headers["location"]

        page = web.get("/portal/dossier")
        out = web.post("/portal/auth/logout", data={"csrf": csrf_of(page.text)}, headers={"Origin": portal})
        refresh = re.search(r'http-equiv="refresh" content="0;url=([^"]+)"', out.text)
        assert out.status_code == 200 and refresh is not None, out.text[:500]
        provider_logout = html.unescape(refresh.group(1))
        assert provider_logout.startswith(f"{server_issuer(server)}/protocol/openid-connect/logout?")
        confirm = keycloak("GET", provider_logout)  # no id_token_hint: Keycloak asks to confirm
        assert confirm.status_code == 200, confirm.text[:500]
        confirm_form = re.search(r'<form[^>]*action="([^"]+)"[^>]*>(.*?)</form>', confirm.text, re.S)
        assert confirm_form is not None, confirm.text[:1000]
        fields = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', confirm_form.group(2)))
        target = urljoin(provider_logout, html.unescape(confirm_form.group(1)))
        done = keycloak("POST", target, data={**fields, "confirmLogout": ""})
        assert done.status_code == 302 and done.headers["location"] == f"{portal}/portal/?message=deconnecte"

        asked = login_page()  # the next sign-in asks for the password again
        assert asked.status_code == 200 and "kc-form-login" in asked.text


def server_issuer(server: LiveServer) -> str:
    return str(server.settings.portal_oidc_issuer).rstrip("/")
