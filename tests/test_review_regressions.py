"""Regressions found by a second reader of the document-sharing, lifecycle and profile paths:
each was a real hole (a wrong write, a denial of service, a 500, an audit gap) before its fix."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from dmp_fhir.mhd import SourceDocument, provide_bundle

from .lifecycle_helpers import create, create_body, new_ins, representative
from .policy_env import PolicyEnv, policy_env

pytestmark = pytest.mark.asyncio(loop_scope="session")

JSON_PATCH = {"Content-Type": "application/json-patch+json"}
RAW = {"Accept": "application/pdf"}


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def env(mongodb_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PolicyEnv]:
    async for e in policy_env(mongodb_url, tmp_path_factory.mktemp("review"), require_iti67_parameters=True):
        yield e


def tx(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


async def _unchanged_document_entry(env: PolicyEnv, doc_id: str) -> dict[str, Any]:
    doc = (await env.client.get(f"DocumentReference/{doc_id}", headers=env.patient("pat-001"))).json()
    doc["meta"] = {k: v for k, v in doc["meta"].items() if k == "profile"} or None
    if doc["meta"] is None:
        del doc["meta"]
    return {"resource": doc, "request": {"method": "PUT", "url": f"DocumentReference/{doc_id}"}}


async def test_a_patient_cannot_replace_a_professionals_content_in_a_transaction(env: PolicyEnv) -> None:
    before = await env.client.get("Binary/bin-001-ordo", headers={**env.headers("gp_martin"), **RAW})
    forged = {
        "resourceType": "Binary",
        "id": "bin-001-ordo",
        "contentType": "application/pdf",
        "securityContext": {"reference": "DocumentReference/doc-001-ordo"},
        "data": base64.b64encode(b"FORGED BY PATIENT").decode(),
    }
    bundle = tx(
        await _unchanged_document_entry(env, "doc-001-ordo"),
        {"resource": forged, "request": {"method": "PUT", "url": "Binary/bin-001-ordo"}},
    )
    response = await env.client.post("", json=bundle, headers=env.patient("pat-001"))
    assert response.status_code == 403, response.text
    after = await env.client.get("Binary/bin-001-ordo", headers={**env.headers("gp_martin"), **RAW})
    assert after.content == before.content


async def test_a_patient_cannot_delete_a_professionals_content_in_a_transaction(env: PolicyEnv) -> None:
    bundle = tx(
        await _unchanged_document_entry(env, "doc-001-vsm"),
        {"request": {"method": "DELETE", "url": "Binary/bin-001-vsm"}},
    )
    response = await env.client.post("", json=bundle, headers=env.patient("pat-001"))
    assert response.status_code == 403, response.text
    assert (await env.client.get("Binary/bin-001-vsm", headers=env.headers("gp_martin"))).status_code == 200


async def test_a_patient_with_a_record_cannot_claim_another_ins(env: PolicyEnv) -> None:
    ins = new_ins()
    body = create_body(ins, representatives=[representative("EVIL", "Eve", "MTH")])
    squat = await create(env, env.patient("pat-001"), body)
    assert squat.status_code == 409
    assert (
        await env.client.get("RelatedPerson/pat-001-rep-1", headers=env.patient("pat-001"))
    ).status_code == 404
    honest = await create(env, env.headers("gp_martin"), create_body(ins))
    assert honest.status_code == 201, honest.text
    assert honest.json()["id"] != "pat-001"


async def test_json_patch_cannot_blow_the_document_up(env: PolicyEnv) -> None:
    doc = (await env.client.get("DocumentReference/doc-001-ordo", headers=env.headers("gp_martin"))).json()
    operations = [{"op": "copy", "from": "", "path": f"/c{i}"} for i in range(30)]
    response = await env.client.patch(
        "DocumentReference/doc-001-ordo",
        content=json.dumps(operations),
        headers={**env.headers("gp_martin"), **JSON_PATCH},
    )
    assert response.status_code == 422
    assert "too large" in response.text
    again = (await env.client.get("DocumentReference/doc-001-ordo", headers=env.headers("gp_martin"))).json()
    assert again["meta"]["versionId"] == doc["meta"]["versionId"]


@pytest.mark.parametrize("value", [[5], {"a": 1}])
async def test_a_patch_leaving_a_malformed_extension_is_a_4xx(env: PolicyEnv, value: Any) -> None:
    response = await env.client.patch(
        "DocumentReference/doc-001-vsm",
        content=json.dumps([{"op": "add", "path": "/extension", "value": value}]),
        headers={**env.headers("gp_martin"), **JSON_PATCH},
    )
    assert 400 <= response.status_code < 500, response.text


def _bundle() -> dict[str, Any]:
    return provide_bundle(
        "Patient/pat-001", "PractitionerRole/prr-gp-martin", [SourceDocument(b"%PDF-1.4 x")]
    )


def _doc(bundle: dict[str, Any]) -> dict[str, Any]:
    return next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference"
    )


def _set_master(b: dict[str, Any]) -> None:
    _doc(b)["masterIdentifier"] = "abc"


def _set_content(b: dict[str, Any]) -> None:
    _doc(b)["content"] = ["abc"]


def _set_attachment(b: dict[str, Any]) -> None:
    _doc(b)["content"] = [{"attachment": [1]}]


def _set_inline_data(b: dict[str, Any]) -> None:
    _doc(b)["content"][0]["attachment"]["data"] = 5


def _set_list_code(b: dict[str, Any]) -> None:
    b["entry"][0]["resource"]["code"]["coding"].insert(0, "x")


def _set_bad_url(b: dict[str, Any]) -> None:
    b["entry"][0]["request"]["url"] = "http://[x/List"


@pytest.mark.parametrize(
    "mutate", [_set_master, _set_content, _set_attachment, _set_inline_data, _set_list_code, _set_bad_url]
)
async def test_malformed_provide_bundles_are_4xx(env: PolicyEnv, mutate: Any) -> None:
    bundle = _bundle()
    mutate(bundle)
    response = await env.client.post("", json=bundle, headers=env.headers("gp_martin"))
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_validate_with_a_non_string_profile_is_400(env: PolicyEnv) -> None:
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": {"resourceType": "Organization", "name": "x"}},
            {"name": "profile", "valueUri": {"a": 1}},
        ],
    }
    response = await env.client.post("Organization/$validate", json=body, headers=env.headers("gp_martin"))
    assert response.status_code == 400


async def test_a_transaction_event_keeps_what_its_planning_read(env: PolicyEnv) -> None:
    first = await env.client.post("", json=_bundle(), headers=env.headers("gp_martin"))
    old_id = next(
        e["response"]["location"].split("/")[1]
        for e in first.json()["entry"]
        if e["response"]["location"].startswith("DocumentReference/")
    )
    bundle = provide_bundle(
        "Patient/pat-001",
        "PractitionerRole/prr-gp-martin",
        [SourceDocument(b"%PDF-1.4 v2", replaces=f"DocumentReference/{old_id}")],
    )
    assert (await env.client.post("", json=bundle, headers=env.headers("gp_martin"))).status_code == 200
    events = await env.client.get(
        "AuditEvent", params={"patient": "pat-001", "_count": "5"}, headers=env.patient("pat-001")
    )
    latest = events.json()["entry"][0]["resource"]
    references = [e["what"]["reference"] for e in latest["entity"] if "what" in e]
    assert f"DocumentReference/{old_id}/_history/1" in references  # read to be replaced
    assert f"DocumentReference/{old_id}/_history/2" in references  # and superseded
