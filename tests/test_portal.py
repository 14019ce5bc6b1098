"""The patient portal over HTTP (no browser): sign-in, sessions, CSRF, headers, OIDC checks,
and that the pages show exactly what the API lets the person see. The browser flows are in
tests/test_portal_browser.py."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import pytest_asyncio

from dmp_fhir.portal.oidc import pkce_challenge, same_state, token_context
from dmp_fhir.portal.session import FLOW_COOKIE, SESSION_COOKIE, Codec, Flow, Session

from .policy_env import PolicyEnv, policy_env
from .portal_browser import csrf_of

ORIGIN = "http://testserver"
KEYCLOAK_LIKE = {
    "portal_oidc_issuer": "https://idp.example/realms/dmp",
    "portal_oidc_authorization_endpoint": "https://idp.example/realms/dmp/protocol/openid-connect/auth",
    "portal_oidc_token_endpoint": "https://idp.example/realms/dmp/protocol/openid-connect/token",
    "portal_oidc_jwks_uri": "https://idp.example/realms/dmp/protocol/openid-connect/certs",
}


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def env(mongodb_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PolicyEnv]:
    async for e in policy_env(mongodb_url, Path(tmp_path_factory.mktemp("keys")), **KEYCLOAK_LIKE):
        yield e


def browser(env: PolicyEnv) -> httpx.AsyncClient:
    """A fresh cookie jar on the same app, as a browser would be."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=env.app), base_url=ORIGIN)


async def sign_in(web: httpx.AsyncClient, choice: str) -> httpx.Response:
    home = await web.get("/portal/")
    assert home.status_code == 200
    return await web.post("/portal/auth/dev", data={"csrf": csrf_of(home.text), "choix": choice})


async def test_pages_need_a_session(env: PolicyEnv) -> None:
    async with browser(env) as web:
        for path in ("/portal/dossier", "/portal/acces", "/portal/historique", "/portal/fermer"):
            response = await web.get(path)
            assert response.status_code == 303 and response.headers["location"] == "/portal/", path
        assert (await web.get("/portal/documents/doc-002-irm/contenu")).status_code == 303
        for path, form in (
            ("/portal/acces", {"action": "oppose-emergency"}),
            ("/portal/fermer", {"confirmation": "oui"}),
            ("/portal/documents/doc-002-irm/masquage", {"action": "masquer"}),
        ):
            response = await web.post(path, data=form)
            assert response.status_code == 303 and response.headers["location"] == "/portal/", path


async def test_sign_in_shows_the_patients_documents(env: PolicyEnv) -> None:
    async with browser(env) as web:
        signed = await sign_in(web, "patient:pat-002")
        assert signed.status_code == 303 and signed.headers["location"] == "/portal/dossier"
        page = await web.get("/portal/dossier")
        assert page.status_code == 200
        for doc in ("doc-002-psy", "doc-002-presc-kine", "doc-002-irm", "doc-002-kine-bilan"):
            assert f'data-id="{doc}"' in page.text
        assert "Julien ROBIN" in page.text
        assert page.text.count('class="document"') == 4
        # newest first inside a section, sections in the DMP's order
        assert page.text.index("Synthèse") < page.text.index("Imagerie")


async def test_a_document_invisible_to_the_patient_stays_invisible(env: PolicyEnv) -> None:
    async with browser(env) as web:
        await sign_in(web, "patient:pat-003")
        page = await web.get("/portal/dossier")
        assert 'data-id="doc-003-mammo"' in page.text
        assert "doc-003-rcp" not in page.text
        assert (await web.get("/portal/documents/doc-003-rcp")).status_code == 404
        assert (await web.get("/portal/documents/doc-003-rcp/contenu")).status_code == 404
        # another patient's document: refused as the API refuses it
        other = await web.get("/portal/documents/doc-002-irm")
        assert other.status_code == 403 and "IRM" not in other.text


async def test_representative_does_not_see_what_is_hidden_from_representatives(env: PolicyEnv) -> None:
    async with browser(env) as web:
        await sign_in(web, "representant:rp-020-mere:pat-020")
        page = await web.get("/portal/dossier")
        assert page.status_code == 200
        assert "représentant légal" in page.text and "Léa FONTAINE" in page.text
        assert "doc-020-contraception" not in page.text
        assert (await web.get("/portal/documents/doc-020-contraception")).status_code == 404


async def test_sign_in_refuses_a_stranger_to_the_record(env: PolicyEnv) -> None:
    async with browser(env) as web:
        refused = await sign_in(web, "representant:rp-020-mere:pat-001")
        assert refused.status_code == 403
        anonymous = env.app.state.portal.codec.session(web.cookies.get(SESSION_COOKIE))
        assert anonymous is None or not anonymous.signed_in
        assert (await web.get("/portal/dossier")).status_code == 303


async def test_cookies_and_headers(env: PolicyEnv) -> None:
    async with browser(env) as web:
        home = await web.get("/portal/")
        csp = home.headers["content-security-policy"]
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert home.headers["x-frame-options"] == "DENY"
        assert home.headers["cache-control"] == "no-store"
        cookie = home.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/portal" in cookie
        assert "Secure" not in cookie  # plain http in this test
        signed = await web.post(
            "/portal/auth/dev", data={"csrf": csrf_of(home.text), "choix": "patient:pat-001"}
        )
        token = env.token({"fhirUser": "Patient/pat-001", "patient": "pat-001"})
        value = signed.cookies[SESSION_COOKIE]
        assert "eyJ" not in value and token[:20] not in value  # sealed, not the JWT itself
        page = await web.get("/portal/dossier")
        assert "eyJ" not in page.text  # no token in the page
        static = await web.get("/portal/static/portal.css")
        assert static.status_code == 200 and "text/css" in static.headers["content-type"]
        assert (
            (await web.get("/fhir/metadata"))
            .headers["content-security-policy"]
            .startswith("default-src 'none'")
        )


async def test_secure_cookie_behind_tls(env: PolicyEnv) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=env.app), base_url="https://testserver"
    ) as web:
        cookie = (await web.get("/portal/")).headers["set-cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie


async def test_forms_need_the_csrf_token_and_our_origin(env: PolicyEnv) -> None:
    async with browser(env) as web:
        home = await web.get("/portal/")
        assert (await web.post("/portal/auth/dev", data={"choix": "patient:pat-002"})).status_code == 403
        assert (
            await web.post("/portal/auth/dev", data={"csrf": "x", "choix": "patient:pat-002"})
        ).status_code == 403
        non_ascii = await web.post("/portal/auth/dev", data={"csrf": "é" * 43, "choix": "patient:pat-002"})
        assert non_ascii.status_code == 403
        foreign = await web.post(
            "/portal/auth/dev",
            data={"csrf": csrf_of(home.text), "choix": "patient:pat-002"},
            headers={"Origin": "https://evil.example"},
        )
        assert foreign.status_code == 403
        await sign_in(web, "patient:pat-002")
        page = await web.get("/portal/documents/doc-002-irm")
        assert "Masquer ce document" in page.text
        forged = await web.post("/portal/documents/doc-002-irm/masquage", data={"action": "masquer"})
        assert forged.status_code == 403
        closing = await web.post("/portal/fermer", data={"confirmation": "oui", "csrf": "forged"})
        assert closing.status_code == 403
        access = await web.post("/portal/acces", data={"action": "oppose-emergency"})
        assert access.status_code == 403
    gp = await env.client.get("/DocumentReference/doc-002-irm", headers=env.headers("gp_nguyen"))
    labels = [c["code"] for label in gp.json()["securityLabel"] for c in label["coding"]]
    assert "MASQUE_PS" not in labels
    emergency = await env.client.get(
        "/DocumentReference?patient=pat-002&status=current",
        headers=env.headers("urgences", purpose_of_use="ETREAT"),
    )
    assert emergency.status_code == 200  # no opposition was recorded


async def test_mask_and_unmask_through_the_api(env: PolicyEnv) -> None:
    kine = env.headers("kine")
    url = "/DocumentReference?patient=pat-002&status=current"

    async def kine_sees() -> bool:
        found = (await env.client.get(url, headers=kine)).json()
        return any(e["resource"]["id"] == "doc-002-presc-kine" for e in found.get("entry", []))

    assert await kine_sees()
    async with browser(env) as web:
        await sign_in(web, "patient:pat-002")
        page = await web.get("/portal/documents/doc-002-presc-kine")
        masked = await web.post(
            "/portal/documents/doc-002-presc-kine/masquage",
            data={"csrf": csrf_of(page.text), "action": "masquer"},
        )
        assert masked.status_code == 303
        assert not await kine_sees()
        page = await web.get(masked.headers["location"])
        assert "Le document est masqué" in page.text and "Démasquer ce document" in page.text
        unmasked = await web.post(
            "/portal/documents/doc-002-presc-kine/masquage",
            data={"csrf": csrf_of(page.text), "action": "demasquer"},
        )
        assert unmasked.status_code == 303
        assert await kine_sees()


async def test_no_token_in_the_logs(env: PolicyEnv, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with browser(env) as web:
        await sign_in(web, "patient:pat-001")
        await web.get("/portal/dossier")
        await web.get("/portal/historique")
        cookie = web.cookies[SESSION_COOKIE]
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    # A JWT's header and claims are base64url JSON ("eyJ..."), joined by dots. (Base64 of JSON
    # alone, e.g. a packed resource in PyMongo's debug log of a command, is not a token.)
    assert not re.search(r"eyJ[\w-]+\.eyJ[\w-]+\.", text) and cookie not in text
    assert "/fhir/DocumentReference" in text  # the portal's API calls are logged like any other


async def test_oidc_login_sends_pkce_state_and_nonce(env: PolicyEnv) -> None:
    async with browser(env) as web:
        response = await web.get("/portal/auth/login")
        assert response.status_code == 302
        target = urlsplit(response.headers["location"])
        assert (
            f"{target.scheme}://{target.netloc}{target.path}"
            == KEYCLOAK_LIKE["portal_oidc_authorization_endpoint"]
        )
        query = {k: v[0] for k, v in parse_qs(target.query).items()}
        assert query["response_type"] == "code"
        assert query["client_id"] == "dmp-patient-portal"
        assert query["redirect_uri"] == "http://testserver/portal/auth/callback"
        assert query["code_challenge_method"] == "S256"
        assert "openid" in query["scope"].split()
        cookie = response.headers["set-cookie"]
        assert "SameSite=lax" in cookie and "HttpOnly" in cookie and "Path=/portal/auth" in cookie
        flow = env.app.state.portal.codec.flow(web.cookies[FLOW_COOKIE])
        assert flow is not None
        assert query["state"] == flow.state and query["nonce"] == flow.nonce
        assert query["code_challenge"] == pkce_challenge(flow.verifier)
        assert flow.verifier not in response.headers["location"]  # only the challenge travels
        # a second sign-in gets fresh values
        again = parse_qs(urlsplit((await web.get("/portal/auth/login")).headers["location"]).query)
        assert again["state"][0] != query["state"] and again["code_challenge"][0] != query["code_challenge"]


async def test_oidc_callback_refuses_a_wrong_or_missing_state(env: PolicyEnv) -> None:
    async with browser(env) as web:
        await web.get("/portal/auth/login")
        wrong = await web.get("/portal/auth/callback", params={"code": "abc", "state": "not-the-one"})
        assert wrong.status_code == 400 and "La connexion a échoué" in wrong.text
        odd = await web.get("/portal/auth/callback", params={"code": "abc", "state": "état-ü"})
        assert odd.status_code == 400
        assert (await web.get("/portal/dossier")).status_code == 303
        # the flow is spent: even the right state is refused now
    async with browser(env) as web:
        login = await web.get("/portal/auth/login")
        state = parse_qs(urlsplit(login.headers["location"]).query)["state"][0]
        web.cookies.delete(FLOW_COOKIE)
        missing = await web.get("/portal/auth/callback", params={"code": "abc", "state": state})
        assert missing.status_code == 400
    async with browser(env) as web:
        login = await web.get("/portal/auth/login")
        state = parse_qs(urlsplit(login.headers["location"]).query)["state"][0]
        denied = await web.get("/portal/auth/callback", params={"error": "access_denied", "state": state})
        assert denied.status_code == 400 and "pas accordé la connexion" in denied.text
        assert (await web.get("/portal/dossier")).status_code == 303


def test_pkce_s256_matches_rfc7636_appendix_b() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    digest = hashlib.sha256(verifier.encode()).digest()
    assert pkce_challenge(verifier) == base64.urlsafe_b64encode(digest).decode().rstrip("=")


def test_state_comparison() -> None:
    flow = Flow(state="s1", nonce="n", verifier="v")
    assert same_state(flow, "s1")
    assert not same_state(flow, "s2") and not same_state(flow, None) and not same_state(None, "s1")
    assert not same_state(flow, "é")


def test_sealed_cookies_resist_tampering_and_confusion() -> None:
    codec = Codec("secret")
    sealed = codec.seal_session(Session(token="t", patient="pat-001", user="Patient/pat-001"))
    opened = codec.session(sealed)
    assert opened is not None and opened.token == "t"
    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    assert codec.session(flipped) is None
    assert Codec("other").session(sealed) is None  # another key
    assert codec.flow(sealed) is None  # a session cookie is not a flow cookie
    assert codec.session(codec.seal_flow(Flow("s", "n", "v"))) is None
    assert codec.session(codec.seal_session(Session(expires=0))) is None  # expired


def test_token_context_reads_the_launch_context() -> None:
    import jwt

    access = jwt.encode({"fhirUser": "RelatedPerson/rp-1", "patient": "pat-020"}, "k" * 32, algorithm="HS256")
    assert token_context({"access_token": access}) == ("pat-020", "RelatedPerson/rp-1")
    own = jwt.encode({"fhirUser": "Patient/pat-001"}, "k" * 32, algorithm="HS256")
    assert token_context({"access_token": own}) == ("pat-001", "Patient/pat-001")
    assert token_context({"access_token": own, "patient": "pat-001"}) == ("pat-001", "Patient/pat-001")
    with pytest.raises(Exception, match="aucun dossier"):
        token_context(
            {"access_token": jwt.encode({"fhirUser": "Practitioner/x"}, "k" * 32, algorithm="HS256")}
        )


async def test_dev_sign_in_is_refused_outside_development_mode(
    mongodb_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    async for prod in policy_env(mongodb_url, Path(tmp_path_factory.mktemp("prod")), dev_mode=False):
        async with browser(prod) as web:
            home = await web.get("/portal/")
            assert "Mode développement" not in home.text and "Aucun moyen de connexion" in home.text
            refused = await web.post("/portal/auth/dev", data={"csrf": "x", "choix": "patient:pat-001"})
            assert refused.status_code == 404
            assert (await web.get("/portal/auth/login")).status_code == 404


async def test_document_contents(env: PolicyEnv) -> None:
    async with browser(env) as web:
        await sign_in(web, "patient:pat-001")
        cda = await web.get("/portal/documents/doc-001-bio")
        assert cda.status_code == 200
        assert cda.text.count("<h3>") >= 1  # the CDA's narrative sections, as structured content
        assert "Ouvrir le document" not in cda.text  # XML is downloaded, never rendered inline
        pdf = await web.get("/portal/documents/doc-001-ldl/contenu")
        assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
        assert pdf.content.startswith(b"%PDF")
        assert pdf.headers["content-disposition"].startswith("inline;")
        assert "unsafe-inline" not in pdf.headers["content-security-policy"]
        xml = await web.get("/portal/documents/doc-001-bio/contenu")
        assert xml.headers["content-disposition"].startswith("attachment;")
        download = await web.get("/portal/documents/doc-001-ldl/contenu?telecharger=1")
        assert download.headers["content-disposition"] == 'attachment; filename="doc-001-ldl.pdf"'


def test_cda_narrative_keeps_tables_and_lists_and_resolves_no_entity(tmp_path: Path) -> None:
    from dmp_fhir.portal.content import cda_preview

    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    document = f"""<?xml version="1.0"?>
<!DOCTYPE ClinicalDocument [<!ENTITY leak SYSTEM "file://{secret}">]>
<ClinicalDocument xmlns="urn:hl7-org:v3"><title>CR de biologie</title>
<component><structuredBody><component><section><title>Biochimie</title><text>
<table><thead><tr><th>Analyse</th><th>Résultat</th></tr></thead>
<tbody><tr><td>Sodium</td><td>139 mmol/L</td></tr>
<tr><td>Potassium</td><td>4,3 mmol/L</td></tr></tbody></table>
<list><item>à jeun</item><item>prélèvement veineux</item></list>
<paragraph>Commentaire &leak;</paragraph></text></section></component></structuredBody></component>
</ClinicalDocument>""".encode()
    shown = cda_preview(document)
    assert shown is not None and shown.title == "CR de biologie"
    ((heading, blocks),) = shown.sections
    assert heading == "Biochimie"
    table, items, paragraph = blocks
    assert table.head == ["Analyse", "Résultat"]
    assert table.rows == [["Sodium", "139 mmol/L"], ["Potassium", "4,3 mmol/L"]]
    assert items.items == ["à jeun", "prélèvement veineux"]
    assert paragraph.text.startswith("Commentaire")
    assert "TOP-SECRET" not in repr(shown)
    assert cda_preview(b"<html><body>not a CDA</body></html>") is None
    assert cda_preview(b"not xml at all") is None


def test_french_dates() -> None:
    from dmp_fhir.portal.present import french_date

    assert french_date("2024-02-08T15:30:00+01:00") == "8 février 2024"
    assert french_date("2026-12-06T12:46:00Z", time_of_day=True) == "6 décembre 2026 à 13:46"  # Paris time
    assert french_date("2024-07-01T23:30:00+00:00") == "2 juillet 2024"  # already the next day in Paris
    assert french_date("2010-05-03") == "3 mai 2010"
    assert french_date("2024-13-01") == "2024-13-01" and french_date(None) == "date inconnue"
