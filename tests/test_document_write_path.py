"""One write path for documents: a plain create/update of a DocumentReference runs ITI-65's
document rules (size and SHA-1 of inline data, masterIdentifier unique, inline bytes moved to a
Binary bound to the document); refusals store nothing."""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from .policy_env import PolicyEnv, policy_env
from .sender_bundles import CONFIDENTIALITY, LOINC, TRE_A03, TRE_A11

pytestmark = pytest.mark.asyncio(loop_scope="session")
JSON = {"Content-Type": "application/fhir+json"}


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def env(mongodb_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PolicyEnv]:
    async for e in policy_env(mongodb_url, Path(tmp_path_factory.mktemp("keys"))):
        yield e


def document(
    data: bytes, *, master: str | None = None, size: int | None = None, sha1: str | None = None
) -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference",
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": master or f"urn:uuid:{uuid.uuid4()}"},
        "status": "current",
        "type": {"coding": [{"system": LOINC, "code": "11488-4"}]},
        "category": [{"coding": [{"system": TRE_A03, "code": "10"}]}],
        "subject": {"reference": "Patient/pat-001"},
        "date": "2026-11-20T10:00:00+01:00",
        "author": [{"reference": "Practitioner/pra-gp-martin"}],
        "securityLabel": [{"coding": [{"system": CONFIDENTIALITY, "code": "N"}]}],
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain",
                    "data": base64.b64encode(data).decode(),
                    "size": len(data) if size is None else size,
                    "hash": sha1 or base64.b64encode(hashlib.sha1(data).digest()).decode(),
                    "title": "CR",
                },
                "format": {"system": TRE_A11, "code": "urn:ihe:iti:xds-sd:text:2008"},
            }
        ],
        "context": {"period": {"start": "2026-11-20T09:30:00+01:00"}},
    }


async def counts(env: PolicyEnv) -> tuple[int, int]:
    db = env.database.db
    return (
        await db["DocumentReference"].count_documents({"_p_patient": "pat-001"}),
        await db["Binary"].count_documents({}),
    )


async def post(env: PolicyEnv, body: dict[str, Any]) -> Any:
    return await env.client.post(
        "/DocumentReference", json=body, headers={**env.headers("gp_martin"), **JSON}
    )


async def test_inline_bytes_move_to_a_binary_bound_to_the_document(env: PolicyEnv) -> None:
    r = await post(env, document(b"compte rendu"))
    assert r.status_code == 201, r.text
    attachment = r.json()["content"][0]["attachment"]
    assert "data" not in attachment and attachment["url"].startswith("Binary/")
    binary = await env.client.get(
        f"/{attachment['url']}", headers={**env.headers("gp_martin"), "Accept": "text/plain"}
    )
    assert binary.content == b"compte rendu"
    stored = await env.database.db["Binary"].find_one({"_id": attachment["url"].split("/")[1]})
    assert stored["resource"]["securityContext"] == {"reference": f"DocumentReference/{r.json()['id']}"}


@pytest.mark.parametrize(
    ("change", "status", "element"),
    [
        ({"size": 3}, 422, "size"),
        ({"sha1": base64.b64encode(hashlib.sha1(b"other").digest()).decode()}, 422, "hash"),
    ],
)
async def test_wrong_size_or_hash_is_refused_and_nothing_is_stored(
    env: PolicyEnv, change: dict[str, Any], status: int, element: str
) -> None:
    before = await counts(env)
    r = await post(env, document(b"compte rendu", **change))
    assert r.status_code == status, r.text
    assert f"DocumentReference.content[0].attachment.{element}" in r.text
    assert await counts(env) == before


async def test_a_duplicate_master_identifier_is_refused_like_iti65(env: PolicyEnv) -> None:
    master = f"urn:uuid:{uuid.uuid4()}"
    assert (await post(env, document(b"one", master=master))).status_code == 201
    before = await counts(env)
    r = await post(env, document(b"two", master=master))
    assert r.status_code == 409, r.text
    assert "masterIdentifier" in r.text
    assert await counts(env) == before


async def test_an_update_with_inline_content_runs_the_same_rules(env: PolicyEnv) -> None:
    created = (await post(env, document(b"v1"))).json()
    body = document(b"v2", master=created["masterIdentifier"]["value"])
    body["id"] = created["id"]
    headers = {**env.headers("gp_martin"), **JSON}
    bad = {
        **body,
        "content": [{**body["content"][0], "attachment": {**body["content"][0]["attachment"], "size": 1}}],
    }
    r = await env.client.put(f"/DocumentReference/{created['id']}", json=bad, headers=headers)
    assert r.status_code == 422, r.text
    r = await env.client.put(f"/DocumentReference/{created['id']}", json=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["content"][0]["attachment"]["url"].startswith("Binary/")
