"""Issue 17: a maximum token lifetime, and the remote JWKS cache's refresh rule."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.requests import Request

from dmp_fhir.auth.jwks import JwksUnavailable, RemoteJwks
from dmp_fhir.auth.signing import public_jwk
from dmp_fhir.auth.tokens import TokenVerifier
from dmp_fhir.config import Settings
from dmp_fhir.policy.access import TokenAccess
from dmp_fhir.policy.matrix import load_matrix

from .auth_helpers import IDP, make_paths, make_verifier, mint, private_jwk, refused

TEN_YEARS = 10 * 365 * 24 * 3600


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_paths(tmp_path_factory.mktemp("lifetime"))


def test_ten_year_token_is_refused_with_the_reason(paths: dict[str, Path]) -> None:
    verifier = make_verifier(paths)
    error = refused(verifier, mint({"fhirUser": "Patient/pat-001"}, lifetime_s=TEN_YEARS))
    assert "lifetime (exp - iat) exceeds the maximum of 3600 s" in error.diagnostics
    assert 'error="invalid_token"' in error.headers["WWW-Authenticate"]


def test_lifetime_limit_is_inclusive_and_configurable(paths: dict[str, Path]) -> None:
    verifier = make_verifier(paths)
    assert verifier.verify(mint({"fhirUser": "Patient/pat-001"}, lifetime_s=3600)).patient == "pat-001"
    refused(verifier, mint({"fhirUser": "Patient/pat-001"}, lifetime_s=3601))
    short = make_verifier(paths, max_token_lifetime_seconds=300)
    assert "maximum of 300 s" in refused(short, mint({"client_id": "c"}, lifetime_s=301)).diagnostics
    assert short.verify(mint({"client_id": "c"}, lifetime_s=300)).subject == "c"


def test_a_token_issued_long_ago_cannot_stretch_its_life(paths: dict[str, Path]) -> None:
    """``iat`` back-dated by ten years and ``exp`` in an hour: still ten years of life."""
    now = int(time.time())
    claims = {"fhirUser": "Patient/pat-001", "iat": now - TEN_YEARS, "exp": now + 3600}
    assert "lifetime" in refused(make_verifier(paths), mint(claims)).diagnostics


def test_leeway_is_bounded_to_five_minutes() -> None:
    with pytest.raises(ValueError):
        Settings.model_validate({"token_leeway_seconds": 301})


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_remote_jwks_refreshes_on_unknown_kid_at_most_once_per_interval() -> None:
    first = private_jwk(ec.generate_private_key(ec.SECP256R1()), "k1")
    second = private_jwk(ec.generate_private_key(ec.SECP256R1()), "k2")
    published: list[dict[str, Any]] = [public_jwk(first)]
    clock = FakeClock()
    jwks = RemoteJwks(
        lambda: {"keys": list(published)}, "test", refresh_interval=30, lifespan=300, clock=clock
    )
    assert jwks.key("k1") is not None and jwks.fetches == 1
    published.append(public_jwk(second))  # rotation: the provider publishes k2
    clock.now += 10
    assert jwks.key("k2") is None and jwks.fetches == 1  # too soon: no fetch, refused
    assert jwks.key("forged") is None and jwks.fetches == 1
    clock.now += 25
    assert jwks.key("k2") is not None and jwks.fetches == 2  # interval passed: one fetch
    assert jwks.key("forged") is None and jwks.fetches == 2  # a forged kid right after: none
    assert jwks.key("k1") is not None  # the old key still verifies
    published.remove(public_jwk(first))
    clock.now += 300
    assert jwks.key("k1") is None and jwks.fetches == 3  # the set expired: the removed key is gone


def test_remote_jwks_unreachable() -> None:
    calls = 0

    def fail() -> Any:
        nonlocal calls
        calls += 1
        raise OSError("connection refused")

    clock = FakeClock()
    jwks = RemoteJwks(fail, "test", clock=clock)
    with pytest.raises(JwksUnavailable):
        jwks.key("k1")
    with pytest.raises(JwksUnavailable):  # nothing cached yet: every token tries again
        jwks.key("k1")
    assert calls == 2
    published = {"keys": [public_jwk(IDP)]}
    kept = RemoteJwks(lambda: published, "test", clock=clock)
    assert kept.key("idp-ec") is not None
    kept._fetch = fail  # the provider goes down: the keys fetched earlier keep verifying
    clock.now += 400
    assert kept.key("idp-ec") is not None


def test_verifier_uses_the_jwks_url_setting(paths: dict[str, Path]) -> None:
    settings = Settings.model_validate(
        {"issuer": "https://idp.example", "jwks_url": "http://127.0.0.1:9/jwks", "dev_key_file": paths["dev"]}
    )
    verifier = TokenVerifier(settings)
    assert verifier.remote_jwks is not None and "127.0.0.1:9" in verifier.remote_jwks.source


@pytest.mark.asyncio
async def test_a_jwks_fetch_never_stalls_the_event_loop(paths: dict[str, Path]) -> None:
    """Fetching the provider's keys may take the whole HTTP timeout: it runs in a worker thread,
    and every other request goes on meanwhile."""
    remote = private_jwk(ec.generate_private_key(ec.SECP256R1()), "remote-1")
    release = threading.Event()

    def slow_fetch() -> Any:
        release.wait(5)
        return {"keys": [public_jwk(remote)]}

    verifier = make_verifier(paths)
    verifier.remote_jwks = RemoteJwks(slow_fetch, "slow provider")
    header = mint({"fhirUser": "Patient/pat-001"}, key=remote)
    assert verifier.may_block(header)
    assert not verifier.may_block(mint({"fhirUser": "Patient/pat-001"}))  # a key of the JWKS file
    assert not verifier.may_block("Bearer not-a-token") and not verifier.may_block(None)
    access = TokenAccess(verifier, None, load_matrix(), None)  # type: ignore[arg-type]
    scope = {"type": "http", "method": "GET", "path": "/fhir/Patient", "query_string": b"",
             "headers": [(b"authorization", header.encode())]}  # fmt: skip
    pending = asyncio.create_task(access.policy_for(Request(scope)))
    for _ in range(5):
        await asyncio.sleep(0.01)  # the loop keeps turning while the keys are fetched
    assert not pending.done()
    release.set()
    policy = await pending
    assert policy.caller.patient == "pat-001"
    assert not verifier.may_block(header)  # fetched once: no more I/O for this key
