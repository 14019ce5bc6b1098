"""Bearer token verification (``dmp_fhir.auth.tokens``): valid tokens → the right ``Caller``.

Refusals are in ``test_auth_refusals.py``; keys and builders in ``auth_helpers.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from dmp_fhir.auth.caller import Caller
from dmp_fhir.auth.signing import DEV_KID, load_or_create_dev_key, public_jwk
from dmp_fhir.auth.tokens import TokenVerifier
from dmp_fhir.config import Settings

from .auth_helpers import BASE, IDP_RSA, ISSUER, PRO, make_paths, make_verifier, mint, private_jwk, refused


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_paths(tmp_path_factory.mktemp("auth"))


@pytest.fixture(scope="module")
def verifier(paths: dict[str, Path]) -> TokenVerifier:
    return make_verifier(paths)


# -- valid tokens --------------------------------------------------------------------------


def test_patient_token(verifier: TokenVerifier) -> None:
    caller = verifier.verify(
        mint(
            {
                "fhirUser": "Patient/pat-001",
                "patient": "pat-001",
                "scope": "openid fhirUser launch/patient patient/*.rs",
            }
        )
    )
    assert (caller.kind, caller.subject, caller.patient) == ("patient", "Patient/pat-001", "pat-001")
    assert caller.scopes.allows("patient", "DocumentReference", "s")
    assert not caller.scopes.allows("patient", "DocumentReference", "c")
    assert caller.token_id and caller.purpose_of_use == "TREAT" and not caller.secret_connection


def test_patient_secret_connection(verifier: TokenVerifier) -> None:
    caller = verifier.verify(mint({"fhirUser": "Patient/minor-1", "secret_connection": True}))
    assert caller.patient == "minor-1" and caller.secret_connection
    assert caller.scopes.allows("patient", "Patient", "r") is False  # no scope claim: nothing


def test_practitioner_token_with_every_claim(verifier: TokenVerifier) -> None:
    claims = {
        **PRO,
        "specialty": "SM54",
        "rpps": "10001234567",
        "organization": "Organization/org-1",
        "finess": "2A0000123",
        "organization_sector": "SA07",
        "actor_category": "X",
        "care_setting": "SAMU_SMUR",
        "purpose_of_use": "ETREAT",
        "client_id": "lgc-1",
        "patient": "pat-001",
        "unknown_claim": {"ignored": [1, 2]},
    }
    caller = verifier.verify(mint(claims))
    assert caller == Caller(
        kind="practitioner",
        subject="Practitioner/pra-1",
        patient="pat-001",
        profession="10",
        specialty="SM54",
        rpps="10001234567",
        organization="Organization/org-1",
        finess="2A0000123",
        organization_sector="SA07",
        actor_category="X",
        care_setting="SAMU_SMUR",
        purpose_of_use="ETREAT",
        scopes=caller.scopes,
        client_id="lgc-1",
        token_id=caller.token_id,
    )
    assert caller.practitioner_id == "pra-1" and caller.wants_emergency_access
    assert caller.scopes.allows("user", "DocumentReference", "c")
    assert not caller.scopes.allows("patient", "DocumentReference", "r")


def test_related_person_token(verifier: TokenVerifier) -> None:
    caller = verifier.verify(
        mint({"fhirUser": "RelatedPerson/rp-1", "patient": "minor-1", "scope": "patient/*.rs"})
    )
    assert caller.kind == "related-person"
    assert (caller.subject, caller.patient) == ("RelatedPerson/rp-1", "minor-1")


@pytest.mark.parametrize(
    ("claims", "subject"),
    [
        ({"client_id": "batch-1", "azp": "other"}, "batch-1"),
        ({"azp": "portal", "sub": "account-42"}, "portal"),
        ({"sub": "svc@idp.example"}, "svc@idp.example"),
        (
            {"client_id": "hospital-eai", "organization": "Organization/chu", "finess": "750712184"},
            "hospital-eai",
        ),
    ],
)
def test_system_token(verifier: TokenVerifier, claims: dict[str, Any], subject: str) -> None:
    caller = verifier.verify(mint({**claims, "scope": "system/*.c"}))
    assert (caller.kind, caller.subject, caller.patient) == ("system", subject, None)
    assert caller.scopes.allows("system", "DocumentReference", "c")


def test_rsa_key_and_absolute_fhir_user(verifier: TokenVerifier) -> None:
    caller = verifier.verify(mint({"fhirUser": f"{BASE}/Patient/pat-9"}, key=IDP_RSA))
    assert caller.subject == "Patient/pat-9" and caller.patient == "pat-9"


def test_scheme_is_case_insensitive_and_leeway_applies(verifier: TokenVerifier) -> None:
    token = mint({"fhirUser": "Patient/pat-001"}, lifetime_s=-10).split(" ", 1)[1]
    assert verifier.verify(f"bearer  {token} ").patient == "pat-001"


def test_list_audience_and_custom_audience(paths: dict[str, Path]) -> None:
    custom = make_verifier(paths, audience="urn:dmp")
    assert custom.verify(mint({"client_id": "c"}, audience="urn:dmp")).kind == "system"
    assert custom.verify(mint({"client_id": "c", "aud": ["x", "urn:dmp"]})).kind == "system"
    refused(custom, mint({"client_id": "c"}))  # the base URL is no longer the audience


def test_dev_token_in_dev_mode(paths: dict[str, Path]) -> None:
    dev = make_verifier(paths, dev_mode=True, jwks_file=None)
    key = load_or_create_dev_key(paths["dev"])
    assert key["kid"] == DEV_KID and paths["dev"].stat().st_mode & 0o777 == 0o600
    assert dev.verify(mint({"fhirUser": "Patient/pat-001"}, key=key)).patient == "pat-001"


def test_jwks_url_client(paths: dict[str, Path]) -> None:
    class StaticClient(jwt.PyJWKClient):
        def __init__(self, data: dict[str, Any] | None) -> None:
            super().__init__("http://jwks.invalid/keys")
            self.data = data

        def fetch_data(self) -> Any:
            if self.data is None:
                raise jwt.PyJWKClientConnectionError("unreachable")
            return self.data

    remote = private_jwk(ec.generate_private_key(ec.SECP256R1()), "remote-1")
    settings_ = Settings.model_validate({"base_url": BASE, "issuer": ISSUER, "dev_key_file": paths["dev"]})
    online = TokenVerifier(settings_, jwks_client=StaticClient({"keys": [public_jwk(remote)]}))
    assert online.verify(mint({"client_id": "c"}, key=remote)).subject == "c"
    assert "unknown signing key" in refused(online, mint({"client_id": "c"})).diagnostics
    offline = TokenVerifier(settings_, jwks_client=StaticClient(None))
    assert "could not be fetched" in refused(offline, mint({"client_id": "c"}, key=remote)).diagnostics
