"""Every bad token is a 401 with an RFC 6750 challenge: never a Caller, never a 500."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dmp_fhir.auth.caller import Caller
from dmp_fhir.auth.signing import load_or_create_dev_key, public_jwk
from dmp_fhir.auth.tokens import TokenVerifier
from dmp_fhir.config import Settings
from dmp_fhir.errors import Unauthorized

from .auth_helpers import (
    CHALLENGE,
    EC_KEY,
    HEADER,
    IDP,
    ISSUER,
    PRO,
    ROGUE,
    RSA_KEY,
    b64,
    base_claims,
    make_paths,
    make_verifier,
    mint,
    raw,
    refused,
)


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_paths(tmp_path_factory.mktemp("auth"))


@pytest.fixture(scope="module")
def verifier(paths: dict[str, Path]) -> TokenVerifier:
    return make_verifier(paths)


def now() -> int:
    return int(time.time())


def signing_input(alg: str) -> str:
    return f"{b64(json.dumps({**HEADER, 'alg': alg}).encode())}.{b64(json.dumps(base_claims()).encode())}"


def hs256(secret: bytes) -> str:
    """HMAC-"signed" with a public key as the secret: the algorithm-confusion attack."""
    message = signing_input("HS256")
    return f"Bearer {message}.{b64(hmac.new(secret, message.encode(), hashlib.sha256).digest())}"


def unsigned(alg: str, signature: str = "") -> str:
    return f"Bearer {signing_input(alg)}.{signature}"


PEM = EC_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
DEEP = b"[" * 5000 + b"]" * 5000

CASES: dict[str, tuple[Callable[[], str], str]] = {
    # time
    "expired": (lambda: mint({"fhirUser": "Patient/p"}, lifetime_s=-120), "expired"),
    "iat in the future": (lambda: raw(HEADER, base_claims(iat=now() + 300)), "not yet valid"),
    "nbf in the future": (lambda: raw(HEADER, base_claims(nbf=now() + 300)), "not yet valid"),
    "exp as a string": (lambda: raw(HEADER, base_claims(exp=str(now() + 600))), "'exp' must be a number"),
    # signature and algorithm
    "other key, same kid": (lambda: mint({"fhirUser": "Patient/p"}, key=ROGUE), "signature is invalid"),
    "alg none, no signature": (lambda: unsigned("none"), "not a signed JWT"),
    "alg none, fake signature": (lambda: unsigned("none", "AAAA"), "algorithm is not accepted"),
    "alg NONE": (lambda: unsigned("NONE", "AAAA"), "algorithm is not accepted"),
    "HS256 with the PEM public key": (lambda: hs256(PEM), "algorithm is not accepted"),
    "HS256 with the JWK": (lambda: hs256(json.dumps(public_jwk(IDP)).encode()), "algorithm is not accepted"),
    "ES384": (lambda: unsigned("ES384", "AAAA"), "algorithm is not accepted"),
    "RS256 on an EC key": (lambda: raw({**HEADER, "alg": "RS256"}, base_claims(), RSA_KEY), "does not match"),
    "unknown kid": (lambda: mint({"fhirUser": "Patient/p"}, key={**IDP, "kid": "nope"}), "unknown"),
    "no kid": (lambda: raw({"alg": "ES256"}, base_claims()), "names no key"),
    "kid not a string": (lambda: raw({**HEADER, "kid": 5}, base_claims()), "invalid"),
    # registered claims
    "wrong audience": (lambda: mint({"fhirUser": "Patient/p"}, audience="https://other/fhir"), "(aud)"),
    "audience a number": (lambda: raw(HEADER, base_claims(aud=42)), "(aud)"),
    "wrong issuer": (lambda: mint({"fhirUser": "Patient/p"}, issuer="https://evil.example"), "(iss)"),
    "issuer a list": (lambda: raw(HEADER, base_claims(iss=[ISSUER])), "(iss)"),
    "missing exp": (lambda: raw(HEADER, base_claims(exp=None)), "'exp' is missing"),
    "missing iat": (lambda: raw(HEADER, base_claims(iat=None)), "'iat' is missing"),
    "missing sub": (lambda: raw(HEADER, base_claims(sub=None)), "'sub' is missing"),
    "missing aud": (lambda: raw(HEADER, base_claims(aud=None)), "'aud' is missing"),
    "missing iss": (lambda: raw(HEADER, base_claims(iss=None)), "'iss' is missing"),
    "sub a number": (lambda: raw(HEADER, base_claims(sub=7)), "invalid"),
    # identity and context
    "no fhirUser nor client": (lambda: raw(HEADER, base_claims(fhirUser=None)), "identify its client"),
    "practitioner without profession": (lambda: mint({"fhirUser": "Practitioner/x"}), "'profession'"),
    "related person without patient": (lambda: mint({"fhirUser": "RelatedPerson/rp"}), "represented patient"),
    "forged context": (lambda: mint({"fhirUser": "Patient/pat-001", "patient": "pat-002"}), "forged context"),
    "profession on a patient token": (
        lambda: mint({"fhirUser": "Patient/p", "profession": "10"}),
        "not valid in a patient token",
    ),
    "finess on a related person": (
        lambda: mint({"fhirUser": "RelatedPerson/r", "patient": "p", "finess": "750712184"}),
        "related-pe",
    ),
    "rpps on a system token": (lambda: mint({"client_id": "c", "rpps": "1"}), "not valid in a system token"),
    "azp malformed beside client_id": (lambda: mint({"client_id": "c", "azp": "a b"}), "'azp' is malformed"),
    "secret connection of a practitioner": (
        lambda: mint({**PRO, "secret_connection": True}),
        "patient token",
    ),
    "patient context on a system token": (lambda: mint({"client_id": "c", "patient": "p"}), "system token"),
    # claim types and shapes
    "profession a number": (lambda: mint({**PRO, "profession": 10}), "'profession' must be a string"),
    "scope a list": (lambda: mint({**PRO, "scope": ["user/*.rs"]}), "'scope' must be a string"),
    "secret_connection a string": (
        lambda: mint({"fhirUser": "Patient/p", "secret_connection": "true"}),
        "must be a boolean",
    ),
    "purpose lower case": (lambda: mint({**PRO, "purpose_of_use": "treat"}), "'purpose_of_use' is malformed"),
    "jti a number": (lambda: mint({"fhirUser": "Patient/p", "jti": 5}), "invalid"),
    "patient a number": (lambda: mint({"fhirUser": "RelatedPerson/r", "patient": 12}), "'patient'"),
    "client_id an object": (lambda: mint({"client_id": {"id": "c"}, "sub": "c"}), "'client_id'"),
    "organization not a reference": (lambda: mint({**PRO, "organization": "Org/1"}), "'organization'"),
    "finess too short": (lambda: mint({**PRO, "finess": "123"}), "'finess' is malformed"),
    "rpps with a space": (lambda: mint({**PRO, "rpps": "100 01"}), "'rpps' is malformed"),
    "specialty with a quote": (lambda: mint({**PRO, "specialty": 'SM"54'}), "'specialty' is malformed"),
    # garbage
    "Bearer and nothing": (lambda: "Bearer", "not a signed JWT"),
    "one word": (lambda: "Bearer abc", "not a signed JWT"),
    "three letters": (lambda: "Bearer a.b.c", "malformed"),
    "dots": (lambda: "Bearer ....", "not a signed JWT"),
    "control characters": (lambda: "Bearer \x00.\x00.\x00", "not a signed JWT"),
    "non-ASCII": (lambda: "Bearer é.é.é", "not a signed JWT"),
    "five parts (JWE)": (lambda: "Bearer a.b.c.d.e", "not a signed JWT"),
    "header not JSON": (lambda: f"Bearer {b64(b'{')}.e30.c2ln", "malformed"),
    "header a JSON list": (lambda: f"Bearer {b64(b'[1]')}.e30.c2ln", "malformed"),
    "deeply nested header": (lambda: f"Bearer {b64(DEEP)}.e30.c2ln", "Invalid bearer token"),
    "deeply nested signed payload": (lambda: raw(HEADER, b'{"a":' + DEEP + b"}"), "Invalid bearer token"),
    "signed payload a list": (lambda: raw(HEADER, b"[1, 2]"), "malformed"),
    "signed payload not JSON": (lambda: raw(HEADER, b"\xff\xfe"), "malformed"),
    "100 kB header": (lambda: "Bearer " + "a" * 100_000, "too large"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_refused(verifier: TokenVerifier, name: str) -> None:
    build, description = CASES[name]
    error = refused(verifier, build())
    challenge = error.headers["WWW-Authenticate"]
    assert challenge.startswith(CHALLENGE) and challenge.endswith('"')
    assert description in error.diagnostics, error.diagnostics


@pytest.mark.parametrize("header", [None, "", "   ", "Basic dXNlcjpwYXNz", "Token abc"])
def test_no_bearer_credentials(verifier: TokenVerifier, header: str | None) -> None:
    error = refused(verifier, header)
    assert error.headers["WWW-Authenticate"] == 'Bearer realm="dmp-fhir"'  # no error code (RFC 6750 §3)


@pytest.mark.parametrize(
    "fhir_user",
    [
        "Patient/../x",
        "Patient/",
        "Patient",
        "Observation/1",
        "Patient/..",
        "Patient/a b",
        "patient/x",
        "",
        "https://evil.example/fhir/Patient/x",
        "Patient/" + "x" * 65,
        42,
        ["Patient/x"],
        {"id": "x"},
    ],
)
def test_malformed_fhir_user(verifier: TokenVerifier, fhir_user: Any) -> None:
    error = refused(verifier, mint({"fhirUser": fhir_user, "sub": "x"}))
    assert "fhirUser" in error.diagnostics


def test_dev_token_refused_outside_dev_mode(verifier: TokenVerifier, paths: dict[str, Path]) -> None:
    """Even though the JWKS file holds the dev key's public part (see ``make_paths``)."""
    token = mint({"fhirUser": "Patient/pat-001"}, key=load_or_create_dev_key(paths["dev"]))
    error = refused(verifier, token)
    assert "development tokens are refused unless the server runs in development mode" in error.diagnostics


def test_dev_mode_does_not_trust_a_foreign_key_with_the_dev_kid(paths: dict[str, Path]) -> None:
    dev = make_verifier(paths, dev_mode=True)
    assert (
        "signature is invalid"
        in refused(dev, mint({"fhirUser": "Patient/p"}, key={**IDP, "kid": "dmp-fhir-dev"})).diagnostics
    )


def test_no_keys_configured_refuses_everything(paths: dict[str, Path]) -> None:
    empty = TokenVerifier(Settings.model_validate({"issuer": ISSUER, "dev_key_file": paths["dev"]}))
    assert "unknown signing key" in refused(empty, mint({"fhirUser": "Patient/p"})).diagnostics


def test_unreadable_jwks_file_is_a_startup_error(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"not": "a jwks"}')
    for path in (tmp_path / "missing.json", tmp_path / "bad.json"):
        with pytest.raises(ValueError, match="DMP_FHIR_JWKS_FILE"):
            TokenVerifier(Settings.model_validate({"jwks_file": path, "dev_key_file": tmp_path / "k"}))


# -- never a 500: whatever the header, whatever the (validly signed) claims ---------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
CLAIM_NAMES = st.sampled_from(
    [
        "fhirUser",
        "patient",
        "profession",
        "specialty",
        "rpps",
        "organization",
        "finess",
        "scope",
        "organization_sector",
        "actor_category",
        "care_setting",
        "purpose_of_use",
        "client_id",
        "azp",
        "jti",
        "secret_connection",
        "sub",
        "exp",
        "iat",
        "nbf",
        "aud",
        "iss",
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.text(max_size=300) | st.text(max_size=300).map(lambda t: "Bearer " + t))
def test_any_header_is_401_or_caller(verifier: TokenVerifier, header: str) -> None:
    with contextlib.suppress(Unauthorized):
        assert isinstance(verifier.verify(header), Caller)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(claims=st.dictionaries(CLAIM_NAMES, JSON, max_size=5))
def test_any_signed_claims_are_401_or_caller(verifier: TokenVerifier, claims: dict[str, Any]) -> None:
    try:
        caller = verifier.verify(raw(HEADER, {**base_claims(fhirUser=None, sub="svc"), **claims}))
    except Unauthorized:
        return
    assert isinstance(caller, Caller)


def test_unexpected_error_is_still_401(verifier: TokenVerifier, monkeypatch: pytest.MonkeyPatch) -> None:
    """The last line of defence: a bug in claim handling must not become a 500."""

    def explode(*args: Any, **kwargs: Any) -> Caller:
        raise RuntimeError("bug")

    monkeypatch.setattr("dmp_fhir.auth.tokens.caller_from_claims", explode)
    assert "could not be verified" in refused(verifier, mint({"fhirUser": "Patient/p"})).diagnostics
