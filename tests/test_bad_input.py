"""The bad-input catalogue (issue 9): every hostile or broken request gets the right status
and an OperationOutcome, stores nothing, and leaks nothing about the server's insides."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from pymongo import AsyncMongoClient

from . import fixtures as fx
from .conftest import open_access_app
from .policy_env import PolicyEnv, policy_env
from .test_policy_writes import document

pytestmark = pytest.mark.asyncio(loop_scope="session")

JSON = {"Content-Type": "application/fhir+json"}

#: What an error must never show: tracebacks, file paths, Python class names, driver internals.
LEAKS = re.compile(
    r"Traceback|File \"|/work/|/usr/|/home/|site-packages|\.py\b|<class|object at 0x"
    r"|(?-i:\b[A-Z][A-Za-z0-9]*(?:Error|Exception)\b)"
    r"|pymongo|bson|motor|ferret|errmsg|codeName|pydantic|orjson|starlette|fastapi|uvicorn",
    re.IGNORECASE,
)


class Stored:
    """Counts every stored document (current and history copies) of the test database,
    except the audit trail (refusals are audited, as they should be)."""

    def __init__(self, url: str, db: str) -> None:
        self.client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
        self.db = self.client[db]

    async def count(self) -> int:
        total = 0
        for name in await self.db.list_collection_names():
            if not name.lower().startswith(("audit", "system.")):
                total += await self.db[name].count_documents({})
        return total


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def app(mongodb_url: str) -> AsyncIterator[FastAPI]:
    """Production settings (ITI-67 rule and DMP profiles on), the policy switched off."""
    async with open_access_app(mongodb_url) as application:
        yield application


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def stored(app: FastAPI, mongodb_url: str) -> AsyncIterator[Stored]:
    counter = Stored(mongodb_url, app.state.settings.db)
    yield counter
    await counter.client.close()


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def seeded(client: httpx.AsyncClient) -> dict[str, Any]:
    """One patient, so that an injected "match everything" would show up in a search."""
    response = await client.post("/Patient", json=fx.patient(family="Seeded"), headers=JSON)
    assert response.status_code == 201
    body: dict[str, Any] = response.json()
    return body


def assert_refused(response: httpx.Response, status: int | tuple[int, ...]) -> dict[str, Any]:
    """The status, an OperationOutcome, the hardening headers, and no leak."""
    expected = status if isinstance(status, tuple) else (status,)
    assert response.status_code in expected, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome: dict[str, Any] = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"] and all(i["severity"] in ("error", "fatal") for i in outcome["issue"])
    leak = LEAKS.search(response.text)
    assert leak is None, f"leak {leak.group(0)!r} in {response.text[:500]}"
    assert response.headers["x-content-type-options"] == "nosniff"
    return outcome


async def refused_and_unstored(stored: Stored, request: Any, status: int | tuple[int, ...]) -> dict[str, Any]:
    before = await stored.count()
    outcome = assert_refused(await request, status)
    assert await stored.count() == before, "a refused write stored something"
    return outcome


# -- bodies -----------------------------------------------------------------------------------


async def test_malformed_json(client: httpx.AsyncClient, stored: Stored) -> None:
    for raw in (b'{"resourceType": "Patient",', b"{'a': 1}", b"[1, 2", b"\xef\xbb\xbf{}x", b"   "):
        await refused_and_unstored(stored, client.post("/Patient", content=raw, headers=JSON), 400)
        await refused_and_unstored(stored, client.put("/Patient/p1", content=raw, headers=JSON), 400)


async def test_wrong_content_type(client: httpx.AsyncClient, stored: Stored) -> None:
    body = b'{"resourceType": "Patient"}'
    for media in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        headers = {"Content-Type": media}
        await refused_and_unstored(stored, client.post("/Patient", content=body, headers=headers), 415)
        await refused_and_unstored(stored, client.put("/Patient/p1", content=body, headers=headers), 415)
    await refused_and_unstored(stored, client.post("/Patient/_search", content=body, headers=JSON), 415)


async def test_deeply_nested_json(client: httpx.AsyncClient, stored: Stored) -> None:
    deep = b"[" * 10_000 + b"]" * 10_000
    await refused_and_unstored(stored, client.post("/Patient", content=deep, headers=JSON), 400)
    inner = b'{"url": "http://x", "extension": [' * 10_000 + b"{}" + b"]}" * 10_000
    body = b'{"resourceType": "Patient", "extension": [' + inner + b"]}"
    await refused_and_unstored(stored, client.post("/Patient", content=body, headers=JSON), 400)
    # Deep but parseable (100 levels): refused by the shape rules, not by a crash.
    nested: dict[str, Any] = {"url": "http://x", "valueString": "leaf"}
    for _ in range(100):
        nested = {"url": "http://x", "extension": [nested]}
    resource = {**fx.patient(), "extension": [nested]}
    await refused_and_unstored(stored, client.post("/Patient", json=resource, headers=JSON), (400, 422))


async def test_fifty_megabyte_body(client: httpx.AsyncClient, stored: Stored) -> None:
    pad = "a" * (50 * 1024 * 1024)
    body = ('{"resourceType": "Binary", "contentType": "text/plain", "data": "' + pad + '"}').encode()
    await refused_and_unstored(stored, client.post("/Binary", content=body, headers=JSON), 413)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the stream is cut short
        for start in range(0, len(body), 1024 * 1024):
            yield body[start : start + 1024 * 1024]

    await refused_and_unstored(stored, client.post("/Binary", content=chunks(), headers=JSON), 413)
    await refused_and_unstored(stored, client.post("", content=body, headers=JSON), 413)


async def test_huge_arrays(client: httpx.AsyncClient, stored: Stored) -> None:
    await refused_and_unstored(stored, client.post("/Patient", json=list(range(200_000)), headers=JSON), 400)
    names = [{"family": f"F{i}"} for i in range(100_000)]
    await refused_and_unstored(
        stored, client.post("/Patient", json={**fx.patient(), "name": names}, headers=JSON), 422
    )
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [{"request": {}}] * 5_000}
    await refused_and_unstored(stored, client.post("", json=bundle, headers=JSON), 400)


async def test_invalid_utf8_and_nul(client: httpx.AsyncClient, stored: Stored) -> None:
    bad_utf8 = b'{"resourceType": "Patient", "gender": "fe\xff\xfemale"}'
    await refused_and_unstored(stored, client.post("/Patient", content=bad_utf8, headers=JSON), 400)
    raw_nul = b'{"resourceType": "Patient", "gender": "fe\x00male"}'
    await refused_and_unstored(stored, client.post("/Patient", content=raw_nul, headers=JSON), 400)
    escaped = {**fx.patient(), "name": [{"family": "Mar\u0000tin"}]}
    await refused_and_unstored(stored, client.post("/Patient", json=escaped, headers=JSON), (400, 422))
    nul_key = {**fx.patient(), "gen\u0000der": "female"}
    await refused_and_unstored(stored, client.post("/Patient", json=nul_key, headers=JSON), (400, 422))
    assert_refused(await client.get("/Patient", params={"family": "a\x00b"}), 400)
    assert_refused(await client.get("/Patient/a%00b"), (400, 404))
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert_refused(await client.post("/Patient/_search", content=b"family=\xff\xfe", headers=form), 400)


async def test_resource_type_mismatch(client: httpx.AsyncClient, stored: Stored) -> None:
    prac = fx.practitioner()
    await refused_and_unstored(stored, client.post("/Patient", json=prac, headers=JSON), 400)
    put = client.put("/Patient/p1", json={**prac, "id": "p1"}, headers=JSON)
    await refused_and_unstored(stored, put, 400)
    await refused_and_unstored(stored, client.post("/Patient", json={"name": "x"}, headers=JSON), 400)
    no_type = {**fx.patient(), "resourceType": ["Patient"]}
    await refused_and_unstored(stored, client.post("/Patient", json=no_type, headers=JSON), 400)
    mismatch = {**fx.patient(), "id": "other"}
    await refused_and_unstored(stored, client.put("/Patient/p1", json=mismatch, headers=JSON), 400)


async def test_ids_with_path_characters(client: httpx.AsyncClient, stored: Stored) -> None:
    for rid in ("..%2F..%2Fetc%2Fpasswd", "a%2Fb", "a%5Cb", "%2E%2E", "a b", "x" * 65, "a$b", "a%20b"):
        body = {**fx.patient(), "id": rid}
        put = client.put(f"/Patient/{rid}", json=body, headers=JSON)
        await refused_and_unstored(stored, put, (400, 404, 422))
        assert_refused(await client.get(f"/Patient/{rid}"), (400, 404))
        assert_refused(await client.delete(f"/Patient/{rid}"), (400, 404))
    bad_id = {**fx.patient(), "id": "../x"}
    put = client.put("/Patient/..%2Fx", json=bad_id, headers=JSON)
    await refused_and_unstored(stored, put, (400, 404, 422))


# -- MongoDB operators wherever a value can go ------------------------------------------------

OPERATOR_BODIES: list[dict[str, Any]] = [
    {**fx.patient(), "gender": {"$ne": None}},
    {**fx.patient(), "$where": "sleep(1000)"},
    {**fx.patient(), "name": [{"family": {"$regex": ".*"}}]},
    {**fx.patient(), "id": {"$ne": None}},
    {**fx.patient(), "meta": {"$set": {"versionId": "9"}}},
    {**fx.patient(), "extension": [{"url": "http://x", "valueString": "v", "$inc": 1}]},
    {**fx.patient(), "extension": [{"url": "http://x", "valueString": "v", "a.b": 1}]},
    {**fx.patient(), "extension": [{"url": {"$gt": ""}, "valueString": "v"}]},
    {**fx.patient(), "_s_family": ["injected"]},
    {**fx.patient(), "_p_patient": "someone-else"},
]


@pytest.mark.parametrize("body", OPERATOR_BODIES)
async def test_operators_in_bodies(client: httpx.AsyncClient, stored: Stored, body: dict[str, Any]) -> None:
    await refused_and_unstored(stored, client.post("/Patient", json=body, headers=JSON), (400, 422))
    await refused_and_unstored(
        stored, client.put("/Patient/op1", json={"id": "op1", **body}, headers=JSON), (400, 422)
    )


@pytest.mark.parametrize(
    "params",
    [
        {"family": '{"$ne": null}'},
        {"family": "$where"},
        {"family[$ne]": "x"},
        {"family[$regex]": ".*"},
        {"_id": '{"$regex": ".*"}'},
        {"_id": ".*"},
        {"identifier": "$ne|x"},
        {"name:contains": ".*"},
        {"family": "^"},
        {"$where": "1"},
        {"_sort": "$natural"},
        {"birthdate": '{"$gt": ""}'},
    ],
)
async def test_operators_in_search_values(
    client: httpx.AsyncClient, seeded: dict[str, Any], params: dict[str, str]
) -> None:
    """Either refused (unknown parameter under strict handling, bad value) or matched literally."""
    response = await client.get("/Patient", params=params, headers={"Prefer": "handling=strict"})
    if response.status_code == 200:
        bundle = response.json()
        assert bundle.get("total", 0) == 0, bundle
        assert LEAKS.search(response.text) is None
    else:
        assert_refused(response, 400)
    lenient = await client.get("/Patient", params=params)
    if lenient.status_code == 200:
        matches = [e for e in lenient.json().get("entry", []) if e["search"]["mode"] == "match"]
        # An ignored unknown parameter may match all; a known one never matches by operator.
        assert not matches or set(params) & {"family[$ne]", "family[$regex]", "$where"}
    else:
        assert_refused(lenient, 400)


async def test_operator_in_conditional_create(client: httpx.AsyncClient, stored: Stored) -> None:
    headers = {**JSON, "If-None-Exist": 'identifier={"$ne": null}'}
    response = await client.post("/Patient", json=fx.patient(family="Cond"), headers=headers)
    # The condition matches nothing literally: a create, never a 200 "already exists".
    assert response.status_code in (201, 400), response.text
    if response.status_code == 400:
        assert_refused(response, 400)


# -- searches that ask for too much -----------------------------------------------------------


async def test_five_thousand_search_parameters(client: httpx.AsyncClient) -> None:
    query = "&".join(f"family=f{i}" for i in range(5_000))
    assert_refused(await client.get(f"/Patient?{query}"), 400)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert_refused(await client.post("/Patient/_search", content=query.encode(), headers=form), 400)


async def test_huge_count_is_capped(client: httpx.AsyncClient, seeded: dict[str, Any]) -> None:
    response = await client.get("/Patient", params={"_count": "1000000"})
    assert response.status_code == 200
    assert len(response.json().get("entry", [])) <= 1000
    assert_refused(await client.get("/Patient", params={"_count": "-1"}), 400)
    big = await client.get("/Patient", params={"_count": "9" * 400})
    assert big.status_code in (200, 400)


async def test_include_wildcards_and_loops(client: httpx.AsyncClient, seeded: dict[str, Any]) -> None:
    for params in (
        [("_include", "*")],
        [("_include:iterate", "*")],
        [("_revinclude", "*")],
        [("_revinclude:iterate", "*"), ("_include:iterate", "*")],
        [("_include:iterate", "Patient:link")] * 50,
    ):
        response = await client.get("/Patient", params=params)
        if response.status_code != 200:
            assert_refused(response, 400)


async def test_chains_ten_deep(client: httpx.AsyncClient) -> None:
    chain = ".".join(["subject:Patient.link:Patient"] * 5) + ".family"
    assert_refused(await client.get("/DocumentReference", params={chain: "x"}), 400)
    has = ":".join(["_has:DocumentReference:subject"] * 10) + ":status"
    assert_refused(await client.get("/Patient", params={has: "current"}), 400)


# -- bundles (batch today; the transaction variants start passing with issue 6) ----------------


def _batch(kind: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def _post_entry(resource: dict[str, Any], full_url: str | None = None) -> dict[str, Any]:
    request = {"method": "POST", "url": resource["resourceType"]}
    entry: dict[str, Any] = {"resource": resource, "request": request}
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def _duplicate_full_urls() -> list[dict[str, Any]]:
    url = f"urn:uuid:{uuid.uuid4()}"
    return [_post_entry(fx.patient(family="DupA"), url), _post_entry(fx.patient(family="DupB"), url)]


def _circular() -> list[dict[str, Any]]:
    a, b = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    pa = {**fx.patient(family="CircA"), "link": [{"other": {"reference": b}, "type": "seealso"}]}
    pb = {**fx.patient(family="CircB"), "link": [{"other": {"reference": a}, "type": "seealso"}]}
    return [_post_entry(pa, a), _post_entry(pb, b)]


@pytest.mark.parametrize("kind", ["batch", "transaction"])
async def test_bundle_with_duplicate_full_urls(client: httpx.AsyncClient, stored: Stored, kind: str) -> None:
    post = client.post("", json=_batch(kind, _duplicate_full_urls()), headers=JSON)
    await refused_and_unstored(stored, post, 400)


@pytest.mark.parametrize("kind", ["batch", "transaction"])
async def test_bundle_with_circular_uuid_references(
    client: httpx.AsyncClient, stored: Stored, kind: str
) -> None:
    """A batch has no links between entries; a transaction resolves them (a cycle via ``link``
    is legal data there, so only the batch variant is refused as a whole)."""
    response = await client.post("", json=_batch(kind, _circular()), headers=JSON)
    if kind == "batch":
        before = await stored.count()
        assert_refused(response, 400)
        assert await stored.count() == before
    else:
        assert response.status_code == 200, response.text
        ids = [e["response"]["location"].split("/")[1] for e in response.json()["entry"]]
        first = (await client.get(f"/Patient/{ids[0]}")).json()
        assert first["link"][0]["other"]["reference"] == f"Patient/{ids[1]}"


async def test_bundle_shapes(client: httpx.AsyncClient, stored: Stored) -> None:
    for body in (
        {"resourceType": "Bundle", "type": "batch", "entry": {"request": {}}},
        {"resourceType": "Bundle", "type": "batch", "entry": [None]},
        {"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"method": {"$ne": 1}}}]},
        {"resourceType": "Bundle", "type": "searchset"},
        {"resourceType": "Patient"},
        [],
    ):
        response = await client.post("", json=body, headers=JSON)
        if response.status_code == 200:  # per-entry failures are answered per entry
            for entry in response.json()["entry"]:
                assert not entry["response"]["status"].startswith("2")
                assert LEAKS.search(str(entry)) is None
        else:
            assert_refused(response, 400)


# -- with real tokens: references to other patients inside a bundle ---------------------------


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def env(mongodb_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PolicyEnv]:
    async for e in policy_env(mongodb_url, Path(tmp_path_factory.mktemp("keys"))):
        yield e


async def _documents_of(env: PolicyEnv, pid: str) -> int:
    repo = await env.internal_repository()
    _, result = await repo.search("DocumentReference", [("patient", pid), ("_total", "accurate")])
    return result.total or 0


@pytest.mark.parametrize("kind", ["batch", "transaction"])
async def test_bundle_reaching_another_patient(env: PolicyEnv, kind: str) -> None:
    """The kine treats pat-002, not pat-001: the pat-001 entry is refused and nothing of it
    stored (a transaction is refused whole)."""
    kine = env.headers("kine")
    author = "Practitioner/pra-kine-girard"
    before = {pid: await _documents_of(env, pid) for pid in ("pat-001", "pat-002")}
    bundle = _batch(
        kind,
        [
            _post_entry(document("pat-002", "11506-3", author), f"urn:uuid:{uuid.uuid4()}"),
            _post_entry(document("pat-001", "11506-3", author), f"urn:uuid:{uuid.uuid4()}"),
        ],
    )
    response = await env.client.post("", json=bundle, headers={**kine, **JSON})
    assert await _documents_of(env, "pat-001") == before["pat-001"]
    if kind == "batch":
        assert response.status_code == 200, response.text
        statuses = [e["response"]["status"] for e in response.json()["entry"]]
        assert statuses[0].startswith("201") and statuses[1].startswith("403")
        assert "pat-001" not in str(response.json()["entry"][1])
    else:
        assert_refused(response, 403)
        assert await _documents_of(env, "pat-002") == before["pat-002"]


async def test_errors_carry_no_token_or_internals(env: PolicyEnv) -> None:
    for header in ("Bearer not.a.jwt", "Bearer " + "A" * 5000, "Basic dXNlcjpwYXNz", "Bearer"):
        response = await env.client.get("/Patient/pat-001", headers={"Authorization": header})
        outcome = assert_refused(response, 401)
        assert header.split(" ")[-1] not in str(outcome) or header == "Bearer"


async def test_hostile_xml(client: httpx.AsyncClient, stored: Stored) -> None:
    xml = {"Content-Type": "application/fhir+xml"}
    xxe = (
        b'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b'<Patient xmlns="http://hl7.org/fhir"><gender value="&e;"/></Patient>'
    )
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
        b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;">]>'
        b'<Patient xmlns="http://hl7.org/fhir"><gender value="&d;"/></Patient>'
    )
    for raw in (xxe, bomb, b"<Patient", b'<Patient xmlns="http://hl7.org/fhir"><x/></Patient>'):
        outcome = await refused_and_unstored(
            stored, client.post("/Patient", content=raw, headers=xml), (400, 422)
        )
        assert "root:" not in str(outcome)
