"""The development signing key and token minting (``dmp-fhir token``, tests).

A real deployment verifies tokens from its identity provider (Pro Santé Connect, the
patient portal's IdP...) and never signs anything. For development and demos, the server
can create its own EC P-256 key: its ``kid`` is always ``dmp-fhir-dev``, so that the
verifier can recognise — and, outside development mode, refuse — every token it signed.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

#: The ``kid`` of the development key; reserved: never trusted outside development mode.
DEV_KID = "dmp-fhir-dev"
#: The only signature algorithms accepted (asymmetric, so the server holds no secret).
ALLOWED_ALGORITHMS = ("RS256", "ES256")
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


def load_or_create_dev_key(path: Path) -> dict[str, Any]:
    """The private JWK at ``path``, created (EC P-256, mode 0600) on first use.

    Creation is atomic and first-writer-wins (``os.link``), so a server and a ``dmp-fhir
    token`` started together agree on one key.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        jwk = json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()), as_dict=False))
        jwk.update({"kid": DEV_KID, "alg": "ES256", "use": "sig"})
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(jwk, out, indent=2)
            with contextlib.suppress(FileExistsError):  # another process won the race: use its key
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return _read_dev_key(path)


def _read_dev_key(path: Path) -> dict[str, Any]:
    try:
        jwk = json.loads(path.read_text(encoding="utf-8"))
        key = jwt.PyJWK(jwk)
    except (OSError, ValueError, jwt.PyJWTError) as exc:
        raise ValueError(f"{path}: not a usable development key ({exc}); delete it to recreate") from exc
    if not isinstance(jwk, dict) or jwk.get("kid") != DEV_KID or "d" not in jwk:
        raise ValueError(f"{path}: not a private JWK with kid {DEV_KID!r}; delete it to recreate")
    if key.algorithm_name not in ALLOWED_ALGORITHMS:
        raise ValueError(f"{path}: algorithm {key.algorithm_name} is not RS256 or ES256")
    return jwk


def public_jwk(jwk: dict[str, Any]) -> dict[str, Any]:
    """The public part of a JWK (what a JWKS may publish and a verifier may hold)."""
    return {k: v for k, v in jwk.items() if k not in _PRIVATE_MEMBERS}


def mint_token(
    claims: dict[str, Any],
    *,
    key: dict[str, Any],
    issuer: str,
    audience: str,
    lifetime_s: int = 3600,
) -> str:
    """Sign ``claims`` with the private JWK ``key`` (ES256 for the dev key), adding
    ``iat``/``exp``/``iss``/``aud``/``jti`` and ``sub`` (= ``fhirUser``, else ``client_id``)
    unless ``claims`` already has them — tests rely on that to craft bad tokens."""
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "iat": now,
        "exp": now + lifetime_s,
        "jti": str(uuid.uuid4()),
    }
    subject = claims.get("fhirUser") or claims.get("client_id")
    if subject is not None:
        payload["sub"] = subject
    payload.update(claims)
    signer = jwt.PyJWK(key)
    algorithm = signer.algorithm_name
    if algorithm not in ALLOWED_ALGORITHMS:
        raise ValueError(f"cannot sign with {algorithm}: the server only accepts RS256 and ES256")
    headers = {"kid": key["kid"]} if "kid" in key else None
    return jwt.encode(payload, signer.key, algorithm=algorithm, headers=headers)
