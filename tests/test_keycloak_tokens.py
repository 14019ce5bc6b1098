"""Issue 17: the token path against a real OpenID Connect provider — Keycloak with the realm
``docker-compose.yml`` imports (``deploy/keycloak/dmp-realm.json``), mirroring Pro Santé Connect's
claims for professionals, plus a patient client and an establishment's system client.

The server is configured as compose configures it: ``DMP_FHIR_JWKS_URL``, ``DMP_FHIR_ISSUER``,
``DMP_FHIR_AUDIENCE`` from the realm, development tokens off.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from dmp_fhir.auth.tokens import TokenVerifier
from dmp_fhir.config import Settings
from dmp_fhir.errors import Unauthorized

from .keycloak_server import (
    AUDIENCE,
    OTHER_CLIENT,
    PATIENT_CLIENT,
    Keycloak,
    decode_unverified,
    pkce_authorize_url,
)
from .policy_env import PolicyEnv, policy_env

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
REFRESH_S = 3.0


def settings_for(keycloak: Keycloak, **overrides: Any) -> Settings:
    values = {"jwks_url": keycloak.jwks_url, "issuer": keycloak.issuer, "audience": AUDIENCE,
              "dev_mode": False, "jwks_refresh_seconds": REFRESH_S, **overrides}  # fmt: skip
    return Settings.model_validate(values)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def refusal(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(Unauthorized) as info:
        verifier.verify(f"Bearer {token}")
    return info.value.diagnostics


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def env(
    mongodb_url: str, keycloak: Keycloak, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[PolicyEnv]:
    overrides = {
        "jwks_url": keycloak.jwks_url,
        "issuer": keycloak.issuer,
        "audience": AUDIENCE,
        "dev_mode": False,
    }
    async for e in policy_env(mongodb_url, Path(tmp_path_factory.mktemp("kc")), **overrides):
        yield e


async def document_ids(env: PolicyEnv, token: str, patient: str) -> set[str] | int:
    answer = await env.client.get(
        "/DocumentReference", headers=bearer(token), params={"patient": patient, "status": "current"}
    )
    if answer.status_code != 200:
        return answer.status_code
    return {e["resource"]["id"] for e in answer.json().get("entry", [])}


async def test_professional_password_grant_carries_pro_sante_connect_claims(
    env: PolicyEnv, keycloak: Keycloak
) -> None:
    token = keycloak.access_token("gp-nguyen")
    claims = decode_unverified(token)
    assert claims["iss"] == keycloak.issuer and claims["aud"] == AUDIENCE
    assert claims["fhirUser"] == "Practitioner/pra-gp-nguyen"
    assert (claims["profession"], claims["specialty"], claims["rpps"]) == ("10", "SM54", "19999990021")
    # PSC's subject is the national id (IdNatPs: 8 + RPPS): the realm's user id.
    assert claims["sub"] == claims["SubjectNameID"] == "819999990021"
    assert claims["scope"].split() == ["user/*.cruds"]
    caller = TokenVerifier(settings_for(keycloak)).verify(f"Bearer {token}")
    assert caller.kind == "practitioner" and caller.subject == "Practitioner/pra-gp-nguyen"
    assert caller.organization == "Organization/org-msp-aure" and caller.finess == "990050056"
    # End to end: his patient's record, masked document included (he is the médecin traitant).
    assert await document_ids(env, token, "pat-002") == {
        "doc-002-psy", "doc-002-kine-bilan", "doc-002-irm", "doc-002-presc-kine"
    }  # fmt: skip
    kine = keycloak.access_token("kine-girard")
    assert await document_ids(env, kine, "pat-002") == {"doc-002-kine-bilan", "doc-002-presc-kine"}


async def test_emergency_access_through_the_realms_break_glass_scope(
    env: PolicyEnv, keycloak: Keycloak
) -> None:
    token = keycloak.access_token("urg-moreau", scope="dmp-emergency")
    claims = decode_unverified(token)
    assert (claims["purpose_of_use"], claims["care_setting"]) == ("ETREAT", "ER")
    assert await document_ids(env, token, "pat-002") == {
        "doc-002-kine-bilan",
        "doc-002-irm",
        "doc-002-presc-kine",
    }
    plain = keycloak.access_token("urg-moreau")  # without the scope: no break-glass
    assert "purpose_of_use" not in decode_unverified(plain)
    assert await document_ids(env, plain, "pat-002") == 403


async def test_patient_password_grant(env: PolicyEnv, keycloak: Keycloak) -> None:
    token = keycloak.access_token("julien.robin", client=PATIENT_CLIENT)
    caller = TokenVerifier(settings_for(keycloak)).verify(f"Bearer {token}")
    assert caller.kind == "patient" and caller.patient == "pat-002"
    assert str(caller.scopes) == "patient/*.cruds" or "patient/*.cruds" in decode_unverified(token)["scope"]
    assert await document_ids(env, token, "pat-002") == {
        "doc-002-psy", "doc-002-kine-bilan", "doc-002-irm", "doc-002-presc-kine"
    }  # fmt: skip
    assert await document_ids(env, token, "pat-001") == 403  # another patient's record


async def test_system_client_credentials_carry_the_establishment(env: PolicyEnv, keycloak: Keycloak) -> None:
    token = str(keycloak.client_credentials()["access_token"])
    caller = TokenVerifier(settings_for(keycloak)).verify(f"Bearer {token}")
    assert caller.kind == "system" and caller.subject == "dmp-system-chu"
    assert (caller.finess, caller.organization) == ("990010019", "Organization/org-chu-bellerive")
    org = await env.client.get("/Organization/org-chu-bellerive", headers=bearer(token))
    assert org.status_code == 200
    assert await document_ids(env, token, "pat-002") == set()  # the directory only: no document


async def test_refresh_gives_a_new_token_that_verifies(keycloak: Keycloak) -> None:
    verifier = TokenVerifier(settings_for(keycloak))
    first = keycloak.password_grant("gp-martin")
    second = keycloak.refresh(first["refresh_token"])
    assert second["access_token"] != first["access_token"]
    old, new = decode_unverified(first["access_token"]), decode_unverified(second["access_token"])
    assert new["jti"] != old["jti"] and new["sid"] == old["sid"]
    caller = verifier.verify(f"Bearer {second['access_token']}")
    assert caller.subject == "Practitioner/pra-gp-martin" and caller.token_id == new["jti"]


async def test_wrong_audience_is_refused(env: PolicyEnv, keycloak: Keycloak) -> None:
    token = str(keycloak.client_credentials(OTHER_CLIENT)["access_token"])
    assert decode_unverified(token)["aud"] == "https://other-service.example.org"
    assert "not meant for this server" in refusal(TokenVerifier(settings_for(keycloak)), token)
    answer = await env.client.get("/Organization/org-chu-bellerive", headers=bearer(token))
    assert answer.status_code == 401 and "aud" in answer.headers["WWW-Authenticate"]


async def test_token_lifetime_maximum_applies_to_keycloak_tokens(keycloak: Keycloak) -> None:
    token = keycloak.access_token("gp-nguyen")
    claims = decode_unverified(token)
    assert claims["exp"] - claims["iat"] == 300  # the realm's access token lifespan
    assert TokenVerifier(settings_for(keycloak)).verify(f"Bearer {token}").subject
    strict = TokenVerifier(settings_for(keycloak, max_token_lifetime_seconds=120))
    assert "exceeds the maximum of 120 s" in refusal(strict, token)


async def test_key_rotation(keycloak: Keycloak) -> None:
    """A new key in the JWKS: tokens signed by the old one still verify (until they expire),
    new ones verify once the cache re-fetched, and an unknown kid re-fetches the JWKS at most
    once per ``DMP_FHIR_JWKS_REFRESH_SECONDS``."""
    verifier = TokenVerifier(settings_for(keycloak))
    jwks = verifier.remote_jwks
    assert jwks is not None
    old_token = keycloak.access_token("gp-nguyen")
    old_kid = _kid(old_token)
    assert verifier.verify(f"Bearer {old_token}").subject == "Practitioner/pra-gp-nguyen"
    assert jwks.fetches == 1
    fetched_at = time.monotonic()

    new_kid = keycloak.add_signing_key(f"rotated-{int(time.time())}")
    new_token = keycloak.access_token("gp-nguyen")
    assert _kid(new_token) == new_kid != old_kid
    published = {k["kid"] for k in httpx.get(keycloak.jwks_url).json()["keys"]}
    assert {old_kid, new_kid} <= published

    if time.monotonic() - fetched_at < REFRESH_S - 0.5:  # within the interval: no fetch, refused
        assert "unknown signing key" in refusal(verifier, new_token)
        assert jwks.fetches == 1
    time.sleep(max(0.0, fetched_at + REFRESH_S + 0.2 - time.monotonic()))
    assert verifier.verify(f"Bearer {new_token}").subject == "Practitioner/pra-gp-nguyen"
    assert jwks.fetches == 2
    forged = _with_kid(new_token, "no-such-key")  # right after: an unknown kid costs no fetch
    assert "unknown signing key" in refusal(verifier, forged)
    assert jwks.fetches == 2
    assert verifier.verify(f"Bearer {old_token}").subject == "Practitioner/pra-gp-nguyen"
    assert jwks.fetches == 2


def _kid(token: str) -> str:
    header = token.split(".")[0]
    return str(__import__("json").loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


def _with_kid(token: str, kid: str) -> str:
    import json

    header, payload, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    decoded["kid"] = kid
    encoded = base64.urlsafe_b64encode(json.dumps(decoded).encode()).rstrip(b"=").decode()
    return f"{encoded}.{payload}.{signature}"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_patient_portal_client_requires_pkce_and_accepts_any_loopback_port(
    keycloak: Keycloak, host: str
) -> None:
    """The public client issue 19's patient portal signs in through: authorization code with
    PKCE S256, redirect to ``http://127.0.0.1|localhost:<any port>/portal/auth/callback``."""
    verifier = "a" * 64
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    redirect = f"http://{host}:{40000 + len(host)}/portal/auth/callback"
    with httpx.Client(follow_redirects=False, timeout=30) as http:
        login = http.get(pkce_authorize_url(keycloak, "dmp-patient-portal", redirect, challenge))
        assert login.status_code == 200 and "kc-form-login" in login.text  # the sign-in page
        foreign = http.get(
            pkce_authorize_url(keycloak, "dmp-patient-portal", "http://evil.example/cb", challenge)
        )
        assert foreign.status_code == 400  # no redirect to a foreign site
        plain = http.get(
            keycloak.authorize_url,
            params={"client_id": "dmp-patient-portal", "response_type": "code", "redirect_uri": redirect,
                    "scope": "openid", "state": "s"},
        )  # fmt: skip
        assert plain.status_code == 302 and "code_challenge_method" in plain.headers["location"]
