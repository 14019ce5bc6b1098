"""Safe defaults (issue 9): CORS closed unless configured, security headers on every answer,
request size and time limits, and JSON access logs without bodies, tokens or query values."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from dmp_fhir.app import create_app
from dmp_fhir.logs import QUIET_LIBRARIES, JsonFormatter, configure_logging
from dmp_fhir.mhd import sha1_base64
from dmp_fhir.policy.access import OpenAccess
from dmp_fhir.storage import Database
from dmp_fhir.storage.disposable import drop_disposable

from . import fixtures as fx
from .conftest import BASE, make_settings
from .policy_env import PolicyEnv, policy_env
from .test_policy_writes import document

pytestmark = pytest.mark.asyncio(loop_scope="session")

JSON = {"Content-Type": "application/fhir+json"}


@pytest_asyncio.fixture(loop_scope="session")
async def make_client(mongodb_url: str) -> AsyncIterator[Any]:
    """Builds an app with some settings changed (and a slow route for the time limit)."""
    opened: list[tuple[FastAPI, Database, Any]] = []

    async def build(**overrides: Any) -> httpx.AsyncClient:
        settings = make_settings(mongodb_url, **overrides)
        database = Database(mongodb_url, settings.db)
        app = create_app(settings, database, access=OpenAccess())

        async def slow(request: Request) -> Response:
            await asyncio.sleep(5)
            return Response("late")

        async def crash(request: Request) -> Response:
            raise RuntimeError("/secret/path/module.py exploded with patient Martin")

        app.add_api_route("/fhir/_slow", slow, methods=["GET"], include_in_schema=False)
        app.add_api_route("/fhir/_crash", crash, methods=["GET"], include_in_schema=False)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        opened.append((app, database, lifespan))
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)

    yield build
    for _, database, lifespan in opened:
        await lifespan.__aexit__(None, None, None)
        await drop_disposable(database.client, database.db.name)
        await database.close()


SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


async def test_security_headers_on_every_answer(make_client: Any) -> None:
    client = await make_client()
    for response in (
        await client.get("/metadata"),
        await client.get("/Patient/nope"),
        await client.post("/Patient", content=b"{", headers=JSON),
        await client.get("/nowhere"),
        await client.get("/_crash"),
    ):
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (response.status_code, name)
        assert "default-src 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-request-id"]
        assert "strict-transport-security" not in response.headers
        assert "server" not in response.headers
    hsts = await make_client(hsts_max_age_seconds=31536000)
    assert (await hsts.get("/metadata")).headers["strict-transport-security"].startswith("max-age=31536000")


async def test_cors_closed_unless_configured(make_client: Any) -> None:
    preflight = {
        "Origin": "https://evil.example",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "Authorization",
    }
    closed = await make_client()
    response = await closed.options("/Patient", headers=preflight)
    assert not any(h.startswith("access-control-") for h in response.headers)
    simple = await closed.get("/metadata", headers={"Origin": "https://evil.example"})
    assert not any(h.startswith("access-control-") for h in simple.headers)

    opened = await make_client(cors_origins=["https://app.example"])
    ok = await opened.options("/Patient", headers={**preflight, "Origin": "https://app.example"})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "https://app.example"
    evil = await opened.options("/Patient", headers=preflight)
    assert evil.headers.get("access-control-allow-origin") is None


async def test_request_time_limit(make_client: Any) -> None:
    client = await make_client(request_timeout_seconds=0.2)
    response = await client.get("/_slow")
    assert response.status_code == 503
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "timeout"
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_crash_is_an_outcome_without_internals(make_client: Any) -> None:
    client = await make_client()
    response = await client.get("/_crash")
    assert response.status_code == 500
    assert response.json()["resourceType"] == "OperationOutcome"
    for secret in ("/secret", "module.py", "RuntimeError", "Martin", "Traceback"):
        assert secret not in response.text


async def test_body_limit_before_reading(make_client: Any) -> None:
    client = await make_client(max_body_bytes=1000)
    big = {**fx.patient(), "name": [{"family": "x" * 2000}]}
    response = await client.post("/Patient", json=big, headers=JSON)
    assert response.status_code == 413
    assert response.json()["issue"][0]["code"] == "too-costly"
    assert (await client.post("/Patient", json=fx.patient(), headers=JSON)).status_code == 201


# -- logs --------------------------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def env(mongodb_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PolicyEnv]:
    async for e in policy_env(mongodb_url, Path(tmp_path_factory.mktemp("keys"))):
        yield e


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


async def test_logs_hold_no_content_token_or_query_values(env: PolicyEnv) -> None:
    """The server's logging at its most verbose (debug), a document with a distinctive content
    string, a token, and a search by identifier: none of them may reach the logs."""
    capture = Capture()
    root = logging.getLogger()
    saved = (root.level, root.handlers[:])
    saved_levels = {name: logging.getLogger(name).level for name in QUIET_LIBRARIES}
    configure_logging("debug")
    root.addHandler(capture)
    try:
        headers = env.headers("kine")
        token = headers["Authorization"].removeprefix("Bearer ")
        doc = document("pat-002", "11506-3", "Practitioner/pra-kine-girard")
        secret = "CONTENU-TRES-CONFIDENTIEL-4711"
        doc["content"][0]["attachment"]["data"] = base64.b64encode(secret.encode()).decode()
        doc["content"][0]["attachment"]["hash"] = sha1_base64(secret.encode())
        doc["content"][0]["attachment"]["size"] = len(secret)
        doc["description"] = secret
        created = await env.client.post("/DocumentReference", json=doc, headers={**headers, **JSON})
        assert created.status_code == 201, created.text
        await env.client.get(
            "/DocumentReference", params={"patient": "pat-002", "description": secret}, headers=headers
        )
        await env.client.post("/DocumentReference", content=secret.encode(), headers={**headers, **JSON})
        await env.client.get("/Patient", params={"identifier": "279035121518989"}, headers=headers)
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)
    text = "\n".join(capture.lines)
    assert secret not in text
    assert base64.b64encode(secret.encode()).decode() not in text
    assert token not in text and token.split(".")[1] not in text
    assert "279035121518989" not in text
    requests = [json.loads(line) for line in capture.lines if '"msg":"request"' in line]
    assert len(requests) == 4
    first = requests[0]
    assert first["method"] == "POST" and first["path"] == "/fhir/DocumentReference"
    assert first["status"] == 201 and first["duration_ms"] >= 0 and first["request_id"]
    assert requests[1]["params"] == ["description", "patient"]
