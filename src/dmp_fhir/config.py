"""Settings read from the environment (prefix ``DMP_FHIR_``; ``MONGODB_URL`` as is)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything a deployment may change; defaults suit a developer machine."""

    # populate_by_name: ``Settings(db=...)`` must mean what it says (a test asking for its own
    # database and silently getting the production one would drop it); forbid: a misspelt
    # setting is an error, not a default.
    model_config = SettingsConfigDict(env_prefix="DMP_FHIR_", extra="forbid", populate_by_name=True)

    mongodb_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MONGODB_URL", "DMP_FHIR_MONGODB_URL"),
        description="MongoDB URL; unset means: start the embedded FerretDB (development only).",
    )
    db: str = Field(default="dmp_fhir", validation_alias=AliasChoices("DMP_FHIR_DB"))
    base_url: str = "http://127.0.0.1:8080/fhir"
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = Field(
        default=48 * 1024 * 1024,
        description="Largest request body accepted (a 20 MB document is ~27 MB in base64, "
        "and an ITI-65 Bundle may carry several).",
    )
    binary_inline_max_bytes: int = Field(
        default=256 * 1024,
        description="Binary content larger than this goes to GridFS instead of the Binary document.",
    )
    require_iti67_parameters: bool = Field(
        default=True,
        description="Refuse a DocumentReference search that does not name the patient and the status "
        "(IHE MHD ITI-67 as the French guide requires it).",
    )
    transaction_timeout_seconds: float = Field(
        default=60.0,
        description="A transaction not committed within this time is rolled back by the recovery sweep.",
    )
    default_page_size: int = 20
    max_page_size: int = 1000
    log_level: str = "info"
    profile_enforcement: Literal["all", "declared"] = Field(
        default="all",
        description="Check writes against the DMP profiles: every resource of a profiled type "
        "(all, production) or only those whose meta.profile names a DMP profile (declared).",
    )

    # -- retention (``dmp-fhir purge``), in years -------------------------------------------
    retention_closed_years: int = Field(
        default=10, ge=0, description="A closed DMP is kept this long, and may be reopened meanwhile."
    )
    retention_after_death_years: int = Field(
        default=10, ge=0, description="A deceased patient's DMP is kept this long after death."
    )
    retention_occupational_years: int = Field(
        default=40,
        ge=0,
        description="The occupational-health section is kept this long after the last visit.",
    )
    shutdown_timeout_seconds: int = Field(
        default=30,
        ge=0,
        description="On SIGTERM/SIGINT, how long in-flight requests may take to finish before the "
        "connections are closed (then the audit writer flushes and the embedded database stops).",
    )
    log_json: bool = Field(default=True, description="One JSON object per log line (else plain text).")

    # -- HTTP hardening (dmp_fhir.rest.middleware) ----------------------------------------
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed by CORS (JSON list); empty: no CORS headers at all.",
    )
    request_timeout_seconds: float = Field(
        default=60.0, description="Longest a request may run before a 503 answer; 0 disables."
    )
    hsts_max_age_seconds: int = Field(
        default=0, description="Send Strict-Transport-Security with this max-age (behind TLS only)."
    )

    # -- authentication (bearer JWTs, see dmp_fhir.auth.tokens) --------------------------
    jwks_file: Path | None = Field(default=None, description="JWKS file with the IdP's public keys.")
    jwks_url: str | None = Field(default=None, description="JWKS URL of the IdP (fetched, cached).")
    issuer: str = Field(default="dmp-fhir-dev", description="Required ``iss`` of every token.")
    audience: str | None = Field(default=None, description="Required ``aud``; unset: base_url.")
    dev_mode: bool = Field(
        default=False,
        description="Accept tokens signed by the local development key (``dmp-fhir token``).",
    )
    dev_key_file: Path = Path(".cache/dev-signing-key.json")
    max_token_lifetime_seconds: int = Field(
        default=3600,
        gt=0,
        description="Longest validity a token may claim (exp - iat); a longer one is refused (401).",
    )
    token_leeway_seconds: int = Field(
        default=30,
        ge=0,
        le=300,
        description="Tolerance on clocks for exp, iat and nbf (at most 5 minutes).",
    )
    jwks_refresh_seconds: float = Field(
        default=30.0,
        ge=0,
        description="An unknown kid re-fetches the JWKS URL at most once per this interval.",
    )

    # -- the patient portal (/portal/, dmp_fhir.portal) ------------------------------------
    portal_enabled: bool = Field(default=True, description="Serve the patient portal under /portal/.")
    portal_session_key: str | None = Field(
        default=None,
        description="Secret that encrypts the portal's session cookie (shared by every server "
        "process); unset: a random key per process (sessions end when it restarts).",
    )
    portal_cookie_secure: bool | None = Field(
        default=None, description="Mark the portal's cookies Secure; unset: when base_url is https."
    )
    portal_oidc_issuer: str | None = Field(
        default=None,
        description="The patients' OpenID provider; its /.well-known/openid-configuration gives "
        "the endpoints not set below. Unset (and no endpoints): no OIDC sign-in.",
    )
    portal_oidc_authorization_endpoint: str | None = None
    portal_oidc_token_endpoint: str | None = None
    portal_oidc_jwks_uri: str | None = None
    portal_oidc_client_id: str = "dmp-patient-portal"
    portal_oidc_redirect_uri: str | None = Field(
        default=None, description="Unset: the origin of base_url + /portal/auth/callback."
    )
    portal_oidc_scope: str = "openid"
    portal_oidc_end_session_endpoint: str | None = Field(
        default=None,
        description="The provider's RP-initiated logout endpoint; unset: its discovery's "
        "end_session_endpoint. Signing out of the portal then signs out at the provider too.",
    )
    portal_oidc_post_logout_redirect_uri: str | None = Field(
        default=None,
        description="Where the provider sends the browser after signing out (registered with "
        "the provider); unset: the origin of base_url + /portal/?message=deconnecte.",
    )
    portal_samples_dir: Path | None = Field(
        default=None,
        description="Development sign-in: the sample files whose patients and representatives "
        "are offered (unset: the repository's samples/).",
    )

    @property
    def base_path(self) -> str:
        """The path part of the base URL (``/fhir``), where the API is mounted."""
        from urllib.parse import urlsplit

        return urlsplit(self.base_url).path.rstrip("/")

    @property
    def token_audience(self) -> str:
        """The ``aud`` every token must carry: ``audience``, or else the base URL."""
        return self.audience or self.base_url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
