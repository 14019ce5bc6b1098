"""Bearer token verification: ``Authorization: Bearer <JWT>`` → ``Caller``, or a 401.

What is checked, in order, and why:

1. The header's shape and size (``MAX_AUTHORIZATION_CHARS``) before any parsing, so that
   garbage costs nothing and never reaches the JSON decoder.
2. ``alg`` is RS256 or ES256 *only*: no ``none``, no HMAC (an HS256 token "signed" with the
   public key is the classic confusion attack), and the key's own algorithm must match.
3. ``kid`` selects the key: the JWKS file (``DMP_FHIR_JWKS_FILE``), then the JWKS URL
   (``DMP_FHIR_JWKS_URL``, cached, refreshed at most every 30 s for an unknown kid). The
   reserved kid ``dmp-fhir-dev`` always means the local development key, accepted only when
   ``DMP_FHIR_DEV_MODE`` is true — never from a JWKS, so a dev key leaked into production
   configuration still opens nothing. A token without ``kid`` is refused.
4. Signature, then ``exp``/``iat``/``nbf`` (30 s leeway), ``iss`` (``DMP_FHIR_ISSUER``),
   ``aud`` (``DMP_FHIR_AUDIENCE``, default the base URL); ``exp iat iss aud sub`` required.
5. The claims' types and shapes, and the ``Caller`` (table in ``claims.py``).

Every failure is a 401 carrying an RFC 6750 challenge; nothing the client sends can cause
a 500 (unexpected exceptions are logged and answered as an invalid token). The JWKS file
is read once at start-up: restart the server to rotate keys, or use the URL.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Any, NamedTuple

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ..config import Settings
from ..errors import Unauthorized
from .caller import Caller
from .claims import ClaimError, caller_from_claims
from .signing import ALLOWED_ALGORITHMS, DEV_KID, load_or_create_dev_key, mint_token, public_jwk

__all__ = ["DEV_KID", "TokenVerifier", "load_jwks_file", "load_or_create_dev_key", "mint_token"]

log = logging.getLogger(__name__)

REALM = "dmp-fhir"
LEEWAY_S = 30
MAX_AUTHORIZATION_CHARS = 16 * 1024
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub"]
_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_UNSAFE = re.compile(r'[^\x20-\x7e]|["\\]')
_DESCRIPTIONS: list[tuple[type[Exception], str]] = [
    (jwt.ExpiredSignatureError, "the token has expired"),
    (jwt.ImmatureSignatureError, "the token is not yet valid (iat/nbf in the future)"),
    (jwt.InvalidAudienceError, "the token is not meant for this server (aud)"),
    (jwt.InvalidIssuerError, "the token's issuer is not trusted (iss)"),
    (jwt.InvalidSignatureError, "the signature is invalid"),
    (jwt.InvalidAlgorithmError, "the signature algorithm is not accepted (RS256 or ES256 only)"),
    (jwt.InvalidKeyError, "the signing key is unusable"),
    (jwt.DecodeError, "the token is malformed"),
]


class VerificationKey(NamedTuple):
    algorithm: str  # RS256 or ES256
    key: Any  # a cryptography public key


def invalid_token(description: str) -> Unauthorized:
    """A 401 with ``error="invalid_token"`` (RFC 6750 §3.1)."""
    safe = _UNSAFE.sub("", description)[:200]
    return Unauthorized(
        f"Invalid bearer token: {safe}.",
        headers={
            "WWW-Authenticate": f'Bearer realm="{REALM}", error="invalid_token", error_description="{safe}"'
        },
    )


def authentication_required(reason: str) -> Unauthorized:
    """A 401 without an error code: the request carried no bearer credentials (RFC 6750 §3)."""
    return Unauthorized(reason, headers={"WWW-Authenticate": f'Bearer realm="{REALM}"'})


def _usable(jwk: jwt.PyJWK) -> VerificationKey | None:
    """RS256/ES256 keys only, reduced to their public part."""
    if jwk.algorithm_name not in ALLOWED_ALGORITHMS:
        return None
    key = jwk.key
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        key = key.public_key()
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        return None
    return VerificationKey(jwk.algorithm_name, key)


def load_jwks_file(path: Path) -> dict[str, VerificationKey]:
    """kid → key, from a JWKS file. Unusable entries are skipped with a warning; an
    unreadable file is a configuration error (raised at start-up, not per request)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"DMP_FHIR_JWKS_FILE {path}: cannot read a JWKS ({exc})") from exc
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"DMP_FHIR_JWKS_FILE {path}: not a JWKS (no 'keys' list)")
    keys: dict[str, VerificationKey] = {}
    for entry in entries:
        kid = entry.get("kid") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not isinstance(kid, str) or not kid or kid == DEV_KID:
            log.warning("%s: skipping a key without kid (or with the reserved kid %s)", path, DEV_KID)
            continue
        if entry.get("use", "sig") != "sig":
            continue
        try:
            usable = _usable(jwt.PyJWK(public_jwk(entry)))
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            log.warning("%s: skipping key %s: %s", path, kid, exc)
            continue
        if usable is None:
            log.warning("%s: skipping key %s: only RS256 and ES256 keys are accepted", path, kid)
            continue
        keys[kid] = usable
    return keys


class TokenVerifier:
    """Turns an ``Authorization`` header into a ``Caller`` (or raises ``Unauthorized``)."""

    def __init__(self, settings: Settings, *, jwks_client: jwt.PyJWKClient | None = None) -> None:
        self.issuer = settings.issuer
        self.audience = settings.token_audience
        self.base_url = settings.base_url
        self.dev_mode = settings.dev_mode
        self._file_keys = load_jwks_file(settings.jwks_file) if settings.jwks_file else {}
        if jwks_client is None and settings.jwks_url:
            jwks_client = jwt.PyJWKClient(settings.jwks_url, cache_keys=True, lifespan=300, timeout=5)
        self._jwks_client = jwks_client
        self._dev_key: VerificationKey | None = None
        if settings.dev_mode:
            self._dev_key = _usable(jwt.PyJWK(public_jwk(load_or_create_dev_key(settings.dev_key_file))))
            log.warning(
                "Development mode: tokens signed by %s (kid %s) are accepted.", settings.dev_key_file, DEV_KID
            )
        if not (self._file_keys or self._jwks_client or self._dev_key):
            log.warning(
                "No token signing keys configured (DMP_FHIR_JWKS_FILE, DMP_FHIR_JWKS_URL "
                "or DMP_FHIR_DEV_MODE): every request will be refused."
            )

    def verify(self, authorization: str | None) -> Caller:
        token = self._bearer(authorization)
        try:
            claims = self._decode(token)
            return caller_from_claims(claims, base_url=self.base_url)
        except Unauthorized:
            raise
        except ClaimError as exc:
            raise invalid_token(str(exc)) from None
        except jwt.MissingRequiredClaimError as exc:
            raise invalid_token(f"the required claim '{exc.claim}' is missing") from None
        except jwt.PyJWTError as exc:
            description = next((d for t, d in _DESCRIPTIONS if isinstance(exc, t)), "the token is invalid")
            raise invalid_token(description) from None
        except Exception:  # whatever a hostile token triggers (deep JSON, ...): never a 500
            log.warning("Unexpected error while verifying a bearer token", exc_info=True)
            raise invalid_token("the token could not be verified") from None

    @staticmethod
    def _bearer(authorization: str | None) -> str:
        if authorization is None or not authorization.strip():
            raise authentication_required("Authentication required: send 'Authorization: Bearer <token>'.")
        if len(authorization) > MAX_AUTHORIZATION_CHARS:
            raise invalid_token("the Authorization header is too large")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            raise authentication_required("Only 'Authorization: Bearer <token>' is supported.")
        token = token.strip()
        if not _JWS.fullmatch(token):
            raise invalid_token("the bearer token is not a signed JWT")
        return token

    def _decode(self, token: str) -> dict[str, Any]:
        header = jwt.get_unverified_header(token)
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in ALLOWED_ALGORITHMS:
            raise invalid_token("the signature algorithm is not accepted (RS256 or ES256 only)")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise invalid_token("the token header names no key (kid)")
        key = self._key_for(kid)
        if key.algorithm != algorithm:
            raise invalid_token("the algorithm does not match the signing key")
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=[algorithm],
            audience=self.audience,
            issuer=self.issuer,
            leeway=LEEWAY_S,
            options={"require": REQUIRED_CLAIMS},
        )
        # Also enforced by recent PyJWT; kept explicit so older versions cannot regress it.
        iat = claims["iat"]
        if isinstance(iat, int | float) and iat > time.time() + LEEWAY_S:
            raise invalid_token("the token is not yet valid (iat/nbf in the future)")
        return claims

    def _key_for(self, kid: str) -> VerificationKey:
        if kid == DEV_KID:
            if self._dev_key is None:
                raise invalid_token(
                    "development tokens are refused unless the server runs in development mode"
                )
            return self._dev_key
        key = self._file_keys.get(kid)
        if key is None and self._jwks_client is not None:
            try:
                key = _usable(self._jwks_client.get_signing_key(kid))
            except jwt.PyJWKClientConnectionError as exc:
                log.warning("Cannot fetch the JWKS: %s", exc)
                raise invalid_token("the signing keys could not be fetched") from None
            except jwt.PyJWTError:
                key = None
        if key is None:
            raise invalid_token("unknown signing key (kid)")
        return key
