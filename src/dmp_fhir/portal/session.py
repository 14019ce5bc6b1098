"""The portal's session: an encrypted, authenticated cookie (AES-GCM) holding the signed-in
person's access token and the session's CSRF token — nothing else, and nothing on the server.

Why a cookie and not a server-side store: the server keeps no state of its own outside the
database, any number of processes can serve the portal (they share ``portal_session_key``),
and the cookie is ``HttpOnly`` (no script reads it), ``SameSite=Strict`` and, behind TLS,
``Secure``. Encryption keeps the token out of anything that stores cookies in clear; the
GCM tag makes any tampering a missing session.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SESSION_COOKIE = "dmp_portal"
#: The pending OpenID Connect sign-in (state, nonce, PKCE verifier): SameSite=Lax, because the
#: provider's redirect back to the callback is a cross-site navigation.
FLOW_COOKIE = "dmp_portal_flow"
#: A session lives at most this long, and never beyond its access token's expiry.
MAX_SESSION_SECONDS = 8 * 3600
FLOW_SECONDS = 600


@dataclass
class Session:
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    expires: float = field(default_factory=lambda: time.time() + MAX_SESSION_SECONDS)
    token: str | None = None
    #: The record in context (the patient's own id, or the minor's for a representative).
    patient: str | None = None
    #: ``Patient/<id>`` or ``RelatedPerson/<id>``: who is signed in.
    user: str | None = None
    #: Display names, kept to title every page without reading them again.
    holder: str | None = None
    user_name: str | None = None

    @property
    def signed_in(self) -> bool:
        return self.token is not None and self.patient is not None

    @property
    def representative(self) -> bool:
        return bool(self.user and self.user.startswith("RelatedPerson/"))


@dataclass
class Flow:
    """An OpenID Connect sign-in in progress."""

    state: str
    nonce: str
    verifier: str
    expires: float = field(default_factory=lambda: time.time() + FLOW_SECONDS)


class Codec:
    """Seals and opens cookie values; the cookie's name is authenticated too (a flow cookie
    cannot be replayed as a session cookie)."""

    def __init__(self, secret: str | None) -> None:
        key = hashlib.sha256(secret.encode()).digest() if secret else os.urandom(32)
        self._aead = AESGCM(key)

    def seal(self, name: str, payload: dict[str, Any]) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, json.dumps(payload, separators=(",", ":")).encode(), name.encode())
        return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def open(self, name: str, value: str | None) -> dict[str, Any] | None:
        if not value or len(value) > 8192:
            return None
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            data = json.loads(self._aead.decrypt(raw[:12], raw[12:], name.encode()))
        except (ValueError, InvalidTag):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("expires"), int | float):
            return None
        return data if data["expires"] > time.time() else None

    def session(self, value: str | None) -> Session | None:
        data = self.open(SESSION_COOKIE, value)
        if data is None:
            return None
        try:
            return Session(**data)
        except TypeError:
            return None

    def flow(self, value: str | None) -> Flow | None:
        data = self.open(FLOW_COOKIE, value)
        if data is None:
            return None
        try:
            return Flow(**data)
        except TypeError:
            return None

    def seal_session(self, session: Session) -> str:
        return self.seal(SESSION_COOKIE, asdict(session))

    def seal_flow(self, flow: Flow) -> str:
        return self.seal(FLOW_COOKIE, asdict(flow))
