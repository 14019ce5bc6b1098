"""Keys, verifiers and token builders shared by the auth tests (pure: no database, no HTTP).

Keys: an "IdP" EC key and RSA key published in a JWKS file, another EC key with the same kid
that nobody trusts, and the development key (whose public part is *also* in the JWKS, to
prove that it is refused outside development mode anyway).
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from dmp_fhir.auth.signing import load_or_create_dev_key, mint_token, public_jwk
from dmp_fhir.auth.tokens import TokenVerifier
from dmp_fhir.config import Settings
from dmp_fhir.errors import Unauthorized

BASE = "http://testserver/fhir"
ISSUER = "https://idp.example"
CHALLENGE = 'Bearer realm="dmp-fhir", error="invalid_token", error_description="'


def private_jwk(key: Any, kid: str) -> dict[str, Any]:
    algorithm = ECAlgorithm if isinstance(key, ec.EllipticCurvePrivateKey) else RSAAlgorithm
    jwk: dict[str, Any] = json.loads(algorithm.to_jwk(key))
    jwk["kid"] = kid
    return jwk


EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
IDP = private_jwk(EC_KEY, "idp-ec")
IDP_RSA = private_jwk(RSA_KEY, "idp-rsa")
ROGUE = private_jwk(ec.generate_private_key(ec.SECP256R1()), "idp-ec")  # same kid, other key


def make_paths(root: Path) -> dict[str, Path]:
    dev_key = load_or_create_dev_key(root / "dev.json")
    jwks = root / "jwks.json"
    # The dev key's public part is in the JWKS too: it must still be refused outside dev mode.
    jwks.write_text(json.dumps({"keys": [public_jwk(IDP), public_jwk(IDP_RSA), public_jwk(dev_key)]}))
    return {"dev": root / "dev.json", "jwks": jwks}


def make_verifier(paths: dict[str, Path], **overrides: Any) -> TokenVerifier:
    values: dict[str, Any] = {
        "base_url": BASE,
        "issuer": ISSUER,
        "jwks_file": paths["jwks"],
        "dev_key_file": paths["dev"],
        "dev_mode": False,
    }
    values.update(overrides)
    return TokenVerifier(Settings.model_validate(values))


def mint(claims: dict[str, Any], key: dict[str, Any] = IDP, **kw: Any) -> str:
    return "Bearer " + mint_token(
        claims, key=key, issuer=kw.pop("issuer", ISSUER), audience=kw.pop("audience", BASE), **kw
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw(header: dict[str, Any], payload: dict[str, Any] | bytes, key: Any = EC_KEY) -> str:
    """Sign exactly this header and payload (nothing added, nothing validated by PyJWT):
    for malformed tokens. ``header["alg"]`` picks the signing algorithm."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(body)}"
    signer = jwt.get_algorithm_by_name(header["alg"])
    return f"Bearer {signing_input}.{b64(signer.sign(signing_input.encode(), key))}"


HEADER = {"alg": "ES256", "kid": "idp-ec", "typ": "JWT"}


def base_claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": BASE,
        "iat": now,
        "exp": now + 600,
        "sub": "Patient/pat-001",
        "fhirUser": "Patient/pat-001",
    }
    claims.update(extra)
    return {k: v for k, v in claims.items() if v is not None}


def refused(verifier: TokenVerifier, header: str | None) -> Unauthorized:
    with pytest.raises(Unauthorized) as info:
        verifier.verify(header)
    assert info.value.status == 401
    assert info.value.headers["WWW-Authenticate"].startswith('Bearer realm="dmp-fhir"')
    return info.value


PRO = {"fhirUser": "Practitioner/pra-1", "profession": "10", "scope": "user/*.cruds"}
