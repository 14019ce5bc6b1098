"""Bearer token verification: ``Authorization: Bearer <JWT>`` → ``Caller``, or a 401.

What is checked, in order, and why:

1. The header's shape and size (``MAX_AUTHORIZATION_CHARS``) before any parsing, so that
   garbage costs nothing and never reaches the JSON decoder.
2. ``alg`` is RS256 or ES256 *only*: no ``none``, no HMAC (an HS256 token "signed" with the
   public key is the classic confusion attack), and the key's own algorithm must match.
3. ``kid`` selects the key: the JWKS file (``DMP_FHIR_JWKS_FILE``), then the JWKS URL
   (``DMP_FHIR_JWKS_URL``, cached 5 min, re-fetched for an unknown kid at most once per
   ``DMP_FHIR_JWKS_REFRESH_SECONDS``, see ``jwks.py``). The
   reserved kid ``dmp-fhir-dev`` always means the local development key, accepted only when
   ``DMP_FHIR_DEV_MODE`` is true — never from a JWKS, so a dev key leaked into production
   configuration still opens nothing. A token without ``kid`` is refused.
4. Signature, then ``exp``/``iat``/``nbf`` (``DMP_FHIR_TOKEN_LEEWAY_SECONDS``, 30 s), ``iss``
   (``DMP_FHIR_ISSUER``), ``aud`` (``DMP_FHIR_AUDIENCE``, default the base URL); ``exp iat iss
   aud sub`` required; ``exp - iat`` at most ``DMP_FHIR_MAX_TOKEN_LIFETIME_SECONDS`` (1 h): a
   stolen long-lived token would otherwise open the records for years.
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
from typing import Any

import jwt

from ..config import Settings
from ..errors import Unauthorized
from .caller import Caller
from .claims import ClaimError, caller_from_claims
from .jwks import JwksUnavailable, RemoteJwks, VerificationKey, parse_jwks, url_fetcher, usable_key
from .signing import ALLOWED_ALGORITHMS, DEV_KID, load_or_create_dev_key, mint_token, public_jwk

__all__ = ["DEV_KID", "TokenVerifier", "load_jwks_file", "load_or_create_dev_key", "mint_token"]

log = logging.getLogger(__name__)

REALM = "dmp-fhir"
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


def load_jwks_file(path: Path) -> dict[str, VerificationKey]:
    """kid → key, from a JWKS file. Unusable entries are skipped with a warning; an
    unreadable file is a configuration error (raised at start-up, not per request)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"DMP_FHIR_JWKS_FILE {path}: cannot read a JWKS ({exc})") from exc
    return parse_jwks(data, f"DMP_FHIR_JWKS_FILE {path}")


class TokenVerifier:
    """Turns an ``Authorization`` header into a ``Caller`` (or raises ``Unauthorized``)."""

    def __init__(self, settings: Settings, *, jwks_client: jwt.PyJWKClient | None = None) -> None:
        self.issuer = settings.issuer
        self.audience = settings.token_audience
        self.base_url = settings.base_url
        self.dev_mode = settings.dev_mode
        self.max_lifetime = settings.max_token_lifetime_seconds
        self.leeway = settings.token_leeway_seconds
        self._file_keys = load_jwks_file(settings.jwks_file) if settings.jwks_file else {}
        self.remote_jwks: RemoteJwks | None = None
        if jwks_client is not None or settings.jwks_url:
            fetch = jwks_client.fetch_data if jwks_client else url_fetcher(str(settings.jwks_url))
            source = f"DMP_FHIR_JWKS_URL {jwks_client.uri if jwks_client else settings.jwks_url}"
            self.remote_jwks = RemoteJwks(fetch, source, refresh_interval=settings.jwks_refresh_seconds)
        self._dev_key: VerificationKey | None = None
        if settings.dev_mode:
            self._dev_key = usable_key(jwt.PyJWK(public_jwk(load_or_create_dev_key(settings.dev_key_file))))
            log.warning(
                "Development mode: tokens signed by %s (kid %s) are accepted.", settings.dev_key_file, DEV_KID
            )
        if not (self._file_keys or self.remote_jwks or self._dev_key):
            log.warning(
                "No token signing keys configured (DMP_FHIR_JWKS_FILE, DMP_FHIR_JWKS_URL "
                "or DMP_FHIR_DEV_MODE): every request will be refused."
            )

    def may_block(self, authorization: str | None) -> bool:
        """Whether verifying this header may fetch the provider's JWKS (network I/O)."""
        if self.remote_jwks is None or not authorization:
            return False
        try:
            kid = jwt.get_unverified_header(authorization.partition(" ")[2].strip()).get("kid")
        except Exception:  # a malformed token is refused by verify() without any fetch
            return False
        return isinstance(kid, str) and kid not in self._file_keys and self.remote_jwks.fetch_due(kid)

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
            leeway=self.leeway,
            options={"require": REQUIRED_CLAIMS},
        )
        # Also enforced by recent PyJWT; kept explicit so older versions cannot regress it.
        iat, exp = claims["iat"], claims["exp"]
        if isinstance(iat, int | float) and iat > time.time() + self.leeway:
            raise invalid_token("the token is not yet valid (iat/nbf in the future)")
        if isinstance(iat, int | float) and isinstance(exp, int | float) and exp - iat > self.max_lifetime:
            raise invalid_token(
                f"the token's lifetime (exp - iat) exceeds the maximum of {self.max_lifetime} s"
            )
        return claims

    def _key_for(self, kid: str) -> VerificationKey:
        if kid == DEV_KID:
            if self._dev_key is None:
                raise invalid_token(
                    "development tokens are refused unless the server runs in development mode"
                )
            return self._dev_key
        key = self._file_keys.get(kid)
        if key is None and self.remote_jwks is not None:
            try:
                key = self.remote_jwks.key(kid)
            except JwksUnavailable as exc:
                log.warning("Cannot fetch the JWKS: %s", exc)
                raise invalid_token("the signing keys could not be fetched") from None
        if key is None:
            raise invalid_token("unknown signing key (kid)")
        return key
