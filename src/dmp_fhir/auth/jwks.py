"""JSON Web Key Sets: parsing (file or URL) and the cache of a remote JWKS.

An identity provider rotates its keys by publishing the new one beside the old, then signing
with it: a token naming an unknown ``kid`` means "fetch the set again". Done naively, every
forged ``kid`` costs one request to the provider, so an unknown ``kid`` re-fetches at most
once per ``refresh_interval`` (a refusal meanwhile); the whole set is also re-fetched when it
is older than ``lifespan``, so a removed key stops verifying within that time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .signing import ALLOWED_ALGORITHMS, DEV_KID, public_jwk

log = logging.getLogger(__name__)


class VerificationKey(NamedTuple):
    algorithm: str  # RS256 or ES256
    key: Any  # a cryptography public key


def usable_key(jwk: jwt.PyJWK) -> VerificationKey | None:
    """RS256/ES256 keys only, reduced to their public part."""
    if jwk.algorithm_name not in ALLOWED_ALGORITHMS:
        return None
    key = jwk.key
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        key = key.public_key()
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        return None
    return VerificationKey(jwk.algorithm_name, key)


def parse_jwks(data: Any, source: str) -> dict[str, VerificationKey]:
    """kid → key. Unusable entries (no kid, the reserved development kid, encryption keys,
    other algorithms such as Keycloak's RSA-OAEP key) are skipped; a document that is not a
    JWKS at all raises ``ValueError``."""
    entries = data.get("keys") if isinstance(data, Mapping) else None
    if not isinstance(entries, list):
        raise ValueError(f"{source}: not a JWKS (no 'keys' list)")
    keys: dict[str, VerificationKey] = {}
    for entry in entries:
        kid = entry.get("kid") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not isinstance(kid, str) or not kid or kid == DEV_KID:
            log.warning("%s: skipping a key without kid (or with the reserved kid %s)", source, DEV_KID)
            continue
        if entry.get("use", "sig") != "sig":
            continue
        try:
            usable = usable_key(jwt.PyJWK(public_jwk(entry)))
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            log.warning("%s: skipping key %s: %s", source, kid, exc)
            continue
        if usable is None:
            log.warning("%s: skipping key %s: only RS256 and ES256 keys are accepted", source, kid)
            continue
        keys[kid] = usable
    return keys


class JwksUnavailable(Exception):
    """The JWKS URL could not be fetched and no earlier copy is usable."""


class RemoteJwks:
    """The keys behind a JWKS URL, fetched lazily and re-fetched as the module says."""

    def __init__(
        self,
        fetch: Callable[[], Any],
        source: str,
        *,
        lifespan: float = 300.0,
        refresh_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self.source = source
        self.lifespan = lifespan
        self.refresh_interval = refresh_interval
        self._clock = clock
        self._keys: dict[str, VerificationKey] | None = None
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()
        #: How many times the set was fetched (tests and logs read it).
        self.fetches = 0

    def fetch_due(self, kid: str) -> bool:
        """Whether ``key(kid)`` would fetch the set now (the caller then runs it off the event
        loop: a fetch may take the whole HTTP timeout)."""
        age = self._clock() - self._fetched_at
        if self._keys is None or age >= self.lifespan:
            return True
        return kid not in self._keys and age >= self.refresh_interval

    def key(self, kid: str) -> VerificationKey | None:
        """The key named ``kid``, or None when the provider does not publish it (now)."""
        with self._lock:
            now = self._clock()
            age = now - self._fetched_at
            if self._keys is None or age >= self.lifespan:
                self._refresh(now, keep_stale=self._keys is not None)
            elif kid not in self._keys and age >= self.refresh_interval:
                log.info("%s: unknown kid %r, fetching the JWKS again", self.source, kid[:64])
                self._refresh(now, keep_stale=True)
            assert self._keys is not None
            return self._keys.get(kid)

    def _refresh(self, now: float, *, keep_stale: bool) -> None:
        self._fetched_at = now  # also on failure: an unreachable provider is not hammered
        self.fetches += 1
        try:
            self._keys = parse_jwks(self._fetch(), self.source)
        except (jwt.PyJWKClientError, OSError, ValueError) as exc:
            if not keep_stale:
                self._fetched_at = float("-inf")  # nothing cached: try again on the next token
                raise JwksUnavailable(f"{self.source}: {exc}") from exc
            log.warning(
                "%s: cannot refresh the JWKS (%s); keeping the keys fetched earlier", self.source, exc
            )


def url_fetcher(url: str, timeout: float = 5.0) -> Callable[[], Any]:
    """``fetch`` for a JWKS URL, through PyJWT's client (plain HTTP GET, JSON)."""
    client = jwt.PyJWKClient(url, cache_jwk_set=False, timeout=int(timeout))
    return client.fetch_data
