"""OpenID Connect sign-in for patients: the authorisation-code flow with PKCE (S256).

The portal is a public client (no secret): ``/portal/auth/login`` sends the browser to the
provider with a fresh ``state`` (CSRF on the redirect), ``nonce`` (binds the ID token to this
sign-in) and PKCE challenge; the callback refuses anything whose ``state`` is not the one it
sealed in the flow cookie, exchanges the code with the verifier, checks the ID token
(signature from the provider's JWKS, ``iss``, ``aud``, ``exp``, ``nonce``) and keeps only the
access token. The FHIR API then verifies that token on every request, like any other.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import jwt

from ..config import Settings
from .session import Flow

CALLBACK_PATH = "/portal/auth/callback"
#: Discovery documents and key sets are fetched again after this long.
CACHE_SECONDS = 3600


class SignInError(Exception):
    """The sign-in cannot complete; the message is shown to the person (in French)."""


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 S256: BASE64URL(SHA256(ASCII(code_verifier))), unpadded."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def new_flow() -> Flow:
    # 32 random bytes → a 43-character verifier: the RFC's minimum length, full entropy.
    return Flow(
        state=secrets.token_urlsafe(32), nonce=secrets.token_urlsafe(32), verifier=secrets.token_urlsafe(32)
    )


def same_state(flow: Flow | None, state: str | None) -> bool:
    return flow is not None and bool(state) and hmac.compare_digest(flow.state.encode(), str(state).encode())


@dataclass(frozen=True)
class Provider:
    issuer: str | None
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str | None
    end_session_endpoint: str | None = None  # OpenID Connect RP-Initiated Logout 1.0


def redirect_uri(settings: Settings) -> str:
    if settings.portal_oidc_redirect_uri:
        return settings.portal_oidc_redirect_uri
    parts = urlsplit(settings.base_url)
    return f"{parts.scheme}://{parts.netloc}{CALLBACK_PATH}"


def post_logout_redirect_uri(settings: Settings) -> str:
    if settings.portal_oidc_post_logout_redirect_uri:
        return settings.portal_oidc_post_logout_redirect_uri
    parts = urlsplit(settings.base_url)
    return f"{parts.scheme}://{parts.netloc}/portal/?message=deconnecte"


def configured(settings: Settings) -> bool:
    return bool(
        settings.portal_oidc_issuer
        or (settings.portal_oidc_authorization_endpoint and settings.portal_oidc_token_endpoint)
    )


class OidcClient:
    """The provider's endpoints (discovered once, cached) and the flow's two steps."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._provider: tuple[float, Provider] | None = None
        self._jwks: tuple[float, jwt.PyJWKSet] | None = None

    async def provider(self) -> Provider:
        if self._provider and self._provider[0] > time.monotonic():
            return self._provider[1]
        s = self.settings
        found: dict[str, Any] = {}
        if s.portal_oidc_issuer and not (
            s.portal_oidc_authorization_endpoint and s.portal_oidc_token_endpoint and s.portal_oidc_jwks_uri
        ):
            url = s.portal_oidc_issuer.rstrip("/") + "/.well-known/openid-configuration"
            found = await self._get_json(url)
            if s.portal_oidc_issuer.rstrip("/") != str(found.get("issuer", "")).rstrip("/"):
                raise SignInError("Le fournisseur d'identité ne s'annonce pas sous l'émetteur configuré.")
        authorization = s.portal_oidc_authorization_endpoint or found.get("authorization_endpoint")
        token = s.portal_oidc_token_endpoint or found.get("token_endpoint")
        if not isinstance(authorization, str) or not isinstance(token, str):
            raise SignInError("Le fournisseur d'identité n'est pas configuré.")
        methods = found.get("code_challenge_methods_supported")
        if isinstance(methods, list) and "S256" not in methods:
            raise SignInError("Le fournisseur d'identité ne prend pas en charge PKCE (S256).")
        jwks = s.portal_oidc_jwks_uri or found.get("jwks_uri")
        # ID tokens carry the issuer exactly as the provider spells it (trailing slash and all).
        issuer = str(found.get("issuer") or s.portal_oidc_issuer or "") or None
        end_session = s.portal_oidc_end_session_endpoint or found.get("end_session_endpoint")
        provider = Provider(
            issuer,
            authorization,
            token,
            jwks if isinstance(jwks, str) else None,
            end_session if isinstance(end_session, str) else None,
        )
        self._provider = (time.monotonic() + CACHE_SECONDS, provider)
        return provider

    async def authorization_url(self, flow: Flow) -> str:
        provider = await self.provider()
        query = {
            "response_type": "code",
            "client_id": self.settings.portal_oidc_client_id,
            "redirect_uri": redirect_uri(self.settings),
            "scope": self.settings.portal_oidc_scope,
            "state": flow.state,
            "nonce": flow.nonce,
            "code_challenge": pkce_challenge(flow.verifier),
            "code_challenge_method": "S256",
        }
        separator = "&" if "?" in provider.authorization_endpoint else "?"
        return provider.authorization_endpoint + separator + urlencode(query)

    async def logout_url(self) -> str | None:
        """Where to send the browser so that the provider's own session ends too (RP-Initiated
        Logout: ``client_id`` + a registered ``post_logout_redirect_uri``); None when the
        provider has no end-session endpoint or cannot be reached."""
        try:
            provider = await self.provider()
        except SignInError:
            return None
        if not provider.end_session_endpoint:
            return None
        query = {
            "client_id": self.settings.portal_oidc_client_id,
            "post_logout_redirect_uri": post_logout_redirect_uri(self.settings),
        }
        separator = "&" if "?" in provider.end_session_endpoint else "?"
        return provider.end_session_endpoint + separator + urlencode(query)

    async def exchange(self, flow: Flow, code: str) -> dict[str, Any]:
        """The token response, once its ID token (when the ``openid`` scope gave one) is
        checked against the flow's nonce."""
        provider = await self.provider()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri(self.settings),
            "client_id": self.settings.portal_oidc_client_id,
            "code_verifier": flow.verifier,
        }
        try:
            async with httpx.AsyncClient(timeout=15) as http:
                response = await http.post(
                    provider.token_endpoint, data=form, headers={"Accept": "application/json"}
                )
        except httpx.HTTPError as exc:
            raise SignInError("Le fournisseur d'identité ne répond pas.") from exc
        if response.status_code != 200:
            raise SignInError("Le fournisseur d'identité a refusé le code de connexion.")
        try:
            tokens: dict[str, Any] = response.json()
        except ValueError as exc:
            raise SignInError("Réponse illisible du fournisseur d'identité.") from exc
        if not isinstance(tokens.get("access_token"), str):
            raise SignInError("Le fournisseur d'identité n'a pas délivré de jeton d'accès.")
        id_token = tokens.get("id_token")
        if "openid" in self.settings.portal_oidc_scope.split():
            if not isinstance(id_token, str):
                raise SignInError("Le fournisseur d'identité n'a pas délivré de jeton d'identité.")
            await self.verify_id_token(provider, id_token, flow.nonce)
        return tokens

    async def verify_id_token(self, provider: Provider, id_token: str, nonce: str) -> dict[str, Any]:
        if not provider.jwks_uri:
            raise SignInError("Les clés du fournisseur d'identité sont inconnues.")
        keys = await self._keys(provider.jwks_uri)
        try:
            kid = jwt.get_unverified_header(id_token).get("kid")
            key = next((k for k in keys.keys if k.key_id == kid), None) if kid else None
            if key is None:
                self._jwks = None  # the provider may have rotated its keys: fetch them again once
                keys = await self._keys(provider.jwks_uri)
                key = next((k for k in keys.keys if k.key_id == kid), None)
            if key is None:
                raise SignInError("Le jeton d'identité est signé par une clé inconnue.")
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key=key,
                algorithms=["RS256", "ES256"],
                audience=self.settings.portal_oidc_client_id,
                issuer=provider.issuer or None,
                options={"require": ["exp", "iat", "iss", "aud", "sub"], "verify_iss": bool(provider.issuer)},
            )
        except jwt.PyJWTError as exc:
            raise SignInError("Le jeton d'identité n'est pas valide.") from exc
        if not hmac.compare_digest(str(claims.get("nonce", "")).encode(), nonce.encode()):
            raise SignInError("Le jeton d'identité ne correspond pas à cette connexion.")
        return claims

    async def _keys(self, url: str) -> jwt.PyJWKSet:
        if self._jwks and self._jwks[0] > time.monotonic():
            return self._jwks[1]
        try:
            keys = jwt.PyJWKSet.from_dict(await self._get_json(url))
        except jwt.PyJWTError as exc:
            raise SignInError("Les clés du fournisseur d'identité sont illisibles.") from exc
        self._jwks = (time.monotonic() + CACHE_SECONDS, keys)
        return keys

    @staticmethod
    async def _get_json(url: str) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(timeout=15) as http:
                response = await http.get(url, headers={"Accept": "application/json"})
            data = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError) as exc:
            raise SignInError("Le fournisseur d'identité ne répond pas.") from exc
        if not isinstance(data, dict):
            raise SignInError("Le fournisseur d'identité ne répond pas.")
        return data


def token_context(tokens: dict[str, Any]) -> tuple[str, str]:
    """(record id, signed-in user) from the token response: the SMART ``patient`` launch
    context, else the access token's ``patient``/``fhirUser`` claims. Read without checking
    the signature on purpose — the API checks it on every request; this only picks the URL."""
    claims: dict[str, Any] = {}
    try:
        claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    except jwt.PyJWTError:
        claims = {}
    user = str(claims.get("fhirUser") or "")
    patient = tokens.get("patient") or claims.get("patient")
    if not patient and user.startswith("Patient/"):
        patient = user.split("/", 1)[1]
    if not user and patient:
        user = f"Patient/{patient}"
    if not isinstance(patient, str) or not patient or not user.startswith(("Patient/", "RelatedPerson/")):
        raise SignInError("Ce compte n'est rattaché à aucun dossier de patient.")
    return patient, user
