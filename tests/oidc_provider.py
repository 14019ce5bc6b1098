"""A small OpenID provider for the portal's sign-in tests, served over real HTTP on a loopback
port: discovery, an authorisation endpoint that signs in whoever the test names (no login
form), a token endpoint that enforces PKCE S256 and single-use codes, and its JWKS. Tokens are
signed ES256 with a key the FHIR server under test trusts (its JWKS file), so the access
token it issues is verified by the API like any production token. The Keycloak realm of
deploy/keycloak/ is the real thing; this one lets the suite run without a JVM."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from dmp_fhir.auth.signing import public_jwk

from .live_server import free_port, serving

CLIENT_ID = "dmp-patient-portal"


@dataclass
class Provider:
    issuer: str
    audience: str
    key: Any = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    kid: str = "test-idp"
    #: Who the next authorisation signs in: the access token's ``fhirUser`` and ``patient``.
    user: str = "Patient/pat-001"
    patient: str = "pat-001"
    #: When set, the ID token carries this nonce instead of the one asked for.
    forged_nonce: str | None = None
    #: When set, the ID token is signed with this key (under the provider's kid): a forgery.
    rogue_key: Any = None
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    #: The query of every RP-initiated logout the provider accepted.
    logouts: list[dict[str, str]] = field(default_factory=list)

    def jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(ECAlgorithm.to_jwk(self.key))
        jwk.update({"kid": self.kid, "alg": "ES256", "use": "sig"})
        return public_jwk(jwk)

    def write_jwks(self, path: Path) -> Path:
        path.write_text(json.dumps({"keys": [self.jwk()]}), encoding="utf-8")
        return path

    def sign(self, claims: dict[str, Any], key: Any = None) -> str:
        now = int(time.time())
        body = {"iss": self.issuer, "iat": now, "exp": now + 600, "jti": secrets.token_hex(8), **claims}
        return jwt.encode(body, key or self.key, algorithm="ES256", headers={"kid": self.kid})

    # -- endpoints ------------------------------------------------------------------------

    async def discovery(self, request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "end_session_endpoint": f"{self.issuer}/logout",
                "response_types_supported": ["code"],
                "code_challenge_methods_supported": ["S256"],
            }
        )

    async def jwks(self, request: Request) -> Response:
        return JSONResponse({"keys": [self.jwk()]})

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        if (
            q.get("client_id") != CLIENT_ID
            or q.get("response_type") != "code"
            or q.get("code_challenge_method") != "S256"
            or not q.get("code_challenge")
            or not q.get("redirect_uri")
        ):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        code = secrets.token_urlsafe(16)
        self.codes[code] = {
            "challenge": q["code_challenge"],
            "nonce": q.get("nonce"),
            "redirect_uri": q["redirect_uri"],
            "user": self.user,
            "patient": self.patient,
        }
        return RedirectResponse(
            f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q.get('state', '')})}", status_code=302
        )

    async def token(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        self.token_requests.append(form)
        grant = self.codes.pop(form.get("code", ""), None)  # single use
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        if (
            grant is None
            or form.get("grant_type") != "authorization_code"
            or form.get("client_id") != CLIENT_ID
            or form.get("redirect_uri") != grant["redirect_uri"]
            or challenge != grant["challenge"]
        ):
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        access = self.sign(
            {
                "aud": self.audience,
                "sub": grant["user"],
                "fhirUser": grant["user"],
                "patient": grant["patient"],
                "scope": "openid patient/*.cruds",
                "azp": CLIENT_ID,
            }
        )
        id_token = self.sign(
            {"aud": CLIENT_ID, "sub": grant["user"], "nonce": self.forged_nonce or grant["nonce"]},
            self.rogue_key,
        )
        return JSONResponse(
            {
                "access_token": access,
                "id_token": id_token,
                "token_type": "Bearer",
                "expires_in": 600,
                "patient": grant["patient"],
            }
        )

    async def logout(self, request: Request) -> Response:
        """RP-Initiated Logout: the client names itself and a post-logout URI registered for it
        (here: any loopback URL), as Keycloak requires without an ``id_token_hint``."""
        q = {k: str(v) for k, v in request.query_params.items()}
        back = q.get("post_logout_redirect_uri", "")
        if q.get("client_id") != CLIENT_ID or not back.startswith("http://127.0.0.1:"):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        self.logouts.append(q)
        return RedirectResponse(back, status_code=302)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/jwks", self.jwks),
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
                Route("/logout", self.logout),
            ]
        )


@contextmanager
def oidc_provider(audience: str, port: int | None = None) -> Iterator[Provider]:
    port = port or free_port()
    provider = Provider(issuer=f"http://127.0.0.1:{port}", audience=audience)
    with serving(provider.app(), port, "the test OpenID provider"):
        yield provider
