"""General ``transaction`` Bundles: references, conditional requests, all-or-nothing — down to
a server killed in the middle of one (SIGKILL) and restarted."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from dmp_fhir.auth.signing import load_or_create_dev_key, mint_token
from dmp_fhir.errors import Conflict
from dmp_fhir.storage import Database, ResourceStore
from dmp_fhir.storage.disposable import disposable_name, drop_disposable
from dmp_fhir.storage.journal import OUTCOMES, TRANSACTIONS
from dmp_fhir.storage.store import PlannedWrite

pytestmark = pytest.mark.asyncio(loop_scope="session")


def org(name: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Organization", "name": name, **extra}


def tx(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def post_entry(resource: dict[str, Any], full_url: str | None = None, **request: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"], **request},
    }
    if full_url:
        entry["fullUrl"] = full_url
    return entry


async def count(client: httpx.AsyncClient, query: str) -> int:
    response = await client.get(f"{query}&_summary=count&_total=accurate")
    assert response.status_code == 200, response.text
    return int(response.json()["total"])


# -- REST mechanics (OpenAccess: the policy is exercised in test_mhd) ----------------------


async def test_urn_uuid_references_are_resolved(client: httpx.AsyncClient) -> None:
    parent, child = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    bundle = tx(
        post_entry(org("Service", partOf={"reference": parent}), child),
        post_entry(org("CHU"), parent),
    )
    response = await client.post("", json=bundle)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == "transaction-response"
    child_loc, parent_loc = (e["response"]["location"] for e in body["entry"])
    stored = (await client.get("/".join(child_loc.split("/")[:2]))).json()
    assert stored["partOf"]["reference"] == "/".join(parent_loc.split("/")[:2])


async def test_circular_references_resolve(client: httpx.AsyncClient) -> None:
    a, b = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    response = await client.post(
        "",
        json=tx(
            post_entry(org("A", partOf={"reference": b}), a),
            post_entry(org("B", partOf={"reference": a}), b),
        ),
    )
    assert response.status_code == 200
    first, second = (e["response"]["location"].split("/")[1] for e in response.json()["entry"])
    assert (await client.get(f"Organization/{first}")).json()["partOf"][
        "reference"
    ] == f"Organization/{second}"
    assert (await client.get(f"Organization/{second}")).json()["partOf"][
        "reference"
    ] == f"Organization/{first}"


async def test_if_none_exist_and_conditional_references(client: httpx.AsyncClient) -> None:
    finess = f"urn:test:finess|{uuid.uuid4().hex[:9]}"
    system, value = finess.split("|")
    first = await client.post(
        "",
        json=tx(
            post_entry(
                org("Labo", identifier=[{"system": system, "value": value}]),
                ifNoneExist=f"identifier={finess}",
            )
        ),
    )
    assert first.json()["entry"][0]["response"]["status"] == "201 Created"
    again = await client.post(
        "",
        json=tx(
            post_entry(
                org("Labo bis", identifier=[{"system": system, "value": value}]),
                ifNoneExist=f"identifier={finess}",
            ),
            post_entry(org("Site", partOf={"reference": f"Organization?identifier={finess}"})),
        ),
    )
    assert again.status_code == 200, again.text
    existing, site = again.json()["entry"]
    assert existing["response"]["status"] == "200 OK"
    assert existing["response"]["location"] == first.json()["entry"][0]["response"]["location"]
    site_id = site["response"]["location"].split("/")[1]
    stored = (await client.get(f"Organization/{site_id}")).json()
    assert stored["partOf"]["reference"] == "/".join(existing["response"]["location"].split("/")[:2])
    assert await count(client, f"Organization?identifier={finess}") == 1


async def test_put_delete_patch_and_get_entries(client: httpx.AsyncClient) -> None:
    rid = f"tx-{uuid.uuid4().hex[:8]}"
    gone = f"tx-gone-{uuid.uuid4().hex[:8]}"
    assert (await client.put(f"Organization/{gone}", json={**org("Old"), "id": gone})).status_code == 201
    patch = [{"op": "replace", "path": "/name", "value": "Patched"}]
    bundle = tx(
        {"resource": {**org("Put"), "id": rid}, "request": {"method": "PUT", "url": f"Organization/{rid}"}},
        {"request": {"method": "DELETE", "url": f"Organization/{gone}"}},
        {"request": {"method": "GET", "url": f"Organization/{rid}"}},
    )
    response = await client.post("", json=bundle)
    assert response.status_code == 200, response.text
    put, delete, get = response.json()["entry"]
    assert put["response"]["status"] == "201 Created"
    assert delete["response"]["status"] == "204 No Content"
    assert get["resource"]["name"] == "Put"  # reads run after the writes
    assert (await client.get(f"Organization/{gone}")).status_code == 410
    patch_entry = {
        "resource": {
            "resourceType": "Binary",
            "contentType": "application/json-patch+json",
            "data": base64.b64encode(json.dumps(patch).encode()).decode(),
        },
        "request": {"method": "PATCH", "url": f"Organization/{rid}", "ifMatch": 'W/"1"'},
    }
    patched = await client.post("", json=tx(patch_entry))
    assert patched.status_code == 200, patched.text
    assert (await client.get(f"Organization/{rid}")).json()["name"] == "Patched"


async def test_a_stale_if_match_stores_nothing(client: httpx.AsyncClient) -> None:
    rid = f"tx-{uuid.uuid4().hex[:8]}"
    await client.put(f"Organization/{rid}", json={**org("v1"), "id": rid})
    marker = uuid.uuid4().hex
    bundle = tx(
        post_entry(org(f"new-{marker}")),
        {
            "resource": {**org("v2"), "id": rid},
            "request": {"method": "PUT", "url": f"Organization/{rid}", "ifMatch": 'W/"7"'},
        },
    )
    response = await client.post("", json=bundle)
    assert response.status_code == 412
    assert "Bundle.entry[1]" in response.text
    assert await count(client, f"Organization?name=new-{marker}") == 0
    assert (await client.get(f"Organization/{rid}")).json()["name"] == "v1"


@pytest.mark.parametrize(
    ("bundle", "status"),
    [
        (tx(post_entry(org("x"), "urn:uuid:a"), post_entry(org("y"), "urn:uuid:a")), 400),
        (tx(post_entry(org("x", partOf={"reference": "urn:uuid:nowhere"}))), 400),
        (tx({"request": {"method": "POST", "url": "Organization"}}), 400),
        (tx({"resource": org("x")}), 400),
        (tx({"resource": org("x"), "request": {"method": "POST", "url": "Unknown"}}), 400),
        (
            tx(
                {
                    "resource": {"resourceType": "Patient"},
                    "request": {"method": "POST", "url": "Organization"},
                }
            ),
            400,
        ),
        (tx({"resource": org("x"), "request": {"method": "TRACE", "url": "Organization"}}), 400),
        (
            tx({"resource": {**org("x"), "id": "a"}, "request": {"method": "PUT", "url": "Organization/b"}}),
            400,
        ),
        (tx({"resource": org("x"), "request": {"method": "PUT", "url": "Organization/a/b/c"}}), 400),
        (tx({"resource": org("x"), "request": {"method": "PUT", "url": "Organization/../x"}}), 400),
        (tx(post_entry(org("x", partOf={"reference": "Organization?identifier=none|none"}))), 404),
        (tx(post_entry({"resourceType": "Organization", "name": 3})), 422),
        ({"resourceType": "Bundle", "type": "transaction", "entry": {"not": "a list"}}, 400),
        ({"resourceType": "Bundle", "type": "document"}, 400),
    ],
)
async def test_bad_transactions_name_the_entry_and_store_nothing(
    client: httpx.AsyncClient, bundle: dict[str, Any], status: int
) -> None:
    before = await count(client, "Organization?_lastUpdated=gt2000-01-01")
    response = await client.post("", json=bundle)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert "Traceback" not in response.text
    assert await count(client, "Organization?_lastUpdated=gt2000-01-01") == before


async def test_transaction_and_patch_are_in_the_capability_statement(client: httpx.AsyncClient) -> None:
    capability = (await client.get("metadata")).json()
    rest = capability["rest"][0]
    assert {"code": "transaction"} in rest["interaction"]
    organization = next(r for r in rest["resource"] if r["type"] == "Organization")
    assert {"code": "patch"} in organization["interaction"]


# -- the journal, on the real engine --------------------------------------------------------


@pytest.fixture
async def store(mongodb_url: str) -> Any:
    database = Database(mongodb_url, disposable_name("test", "journal"))
    await database.connect()
    from dmp_fhir.search.indexes import index_fields

    await database.ensure_indexes(index_fields())
    try:
        yield ResourceStore(database)
    finally:
        await drop_disposable(database.client, database.db.name)
        await database.close()


def _planned(n: int, marker: str) -> list[PlannedWrite]:
    return [
        PlannedWrite("Organization", f"{marker}-{i}", org(f"{marker} {i}"), {"_s_name": [marker]})
        for i in range(n)
    ]


async def test_claimed_versions_are_invisible_and_lock_their_resource(store: ResourceStore) -> None:
    journal = store.journal
    await store.write("Organization", "locked-0", org("before"), {})
    await journal.begin("tx-a", [("Organization", "locked-0")], [], timeout=60)
    claimed = await store._claim(PlannedWrite("Organization", "locked-0", org("during"), {}), tx="tx-a")
    assert not isinstance(claimed, type(None))
    # Invisible: current copy, vread, history.
    current = await store.read("Organization", "locked-0")
    assert current is not None and current.resource is not None and current.resource["name"] == "before"
    assert await store.vread("Organization", "locked-0", 2) is None
    assert len(await store.find("Organization", {"_rid": "locked-0"}, history=True)) == 1
    # Locked: a plain writer gets 409 instead of overwriting or waiting forever.
    with pytest.raises(Conflict):
        await store.write("Organization", "locked-0", org("racer"), {})
    # Committed: the next reader settles it and sees it.
    assert await journal.decide("tx-a", "committed") == "committed"
    await store.converge("Organization", "locked-0")
    current = await store.read("Organization", "locked-0")
    assert current is not None and current.resource is not None and current.resource["name"] == "during"
    await journal.recover()
    assert await journal.pending() == 0


async def test_an_expired_transaction_is_aborted_by_whoever_meets_it(store: ResourceStore) -> None:
    journal = store.journal
    await journal.begin("tx-b", [("Organization", "exp-0")], [], timeout=0)
    await store._claim(PlannedWrite("Organization", "exp-0", org("never"), {}), tx="tx-b")
    written = await store.write("Organization", "exp-0", org("plain"), {})
    assert written.version == 1  # the abandoned claim was removed and its version reused
    assert await journal.decide("tx-b", "committed") == "aborted"  # too late for the owner
    await journal.recover()
    assert await journal.pending() == 0
    assert len(await store.find("Organization", {"_rid": "exp-0"}, history=True)) == 1


async def test_recovery_rolls_a_decided_transaction_forward(store: ResourceStore) -> None:
    writes = _planned(20, "fwd")
    journal = store.journal
    await journal.begin("tx-c", [(w.rtype, w.rid) for w in writes], [], timeout=60)
    for w in writes:
        await store._claim(w, tx="tx-c")
    await journal.decide("tx-c", "committed")
    # ... the process dies here, before publishing anything.
    assert await store.count("Organization", {}) == 0
    assert await journal.recover() == {"committed": 1, "aborted": 0, "pending": 0}
    assert await store.count("Organization", {}) == 20
    assert await store.db["Organization_history"].count_documents({"_tx": {"$exists": True}}) == 0
    assert await store.db[TRANSACTIONS].count_documents({}) == 0
    assert await store.db[OUTCOMES].count_documents({}) == 0


async def test_write_atomically_rolls_back_on_a_refusal(store: ResourceStore) -> None:
    async def refuse(current: dict[str, Any] | None) -> None:
        raise Conflict("refused by the guard")

    writes = _planned(5, "rb")
    writes[-1].guard = refuse
    with pytest.raises(Conflict):
        await store.write_atomically(writes, timeout=60)
    assert await store.count("Organization", {}) == 0
    assert await store.db["Organization_history"].count_documents({}) == 0
    assert await store.journal.pending() == 0


async def test_content_blobs_of_an_aborted_transaction_are_removed(store: ResourceStore) -> None:
    async def refuse(current: dict[str, Any] | None) -> None:
        raise Conflict("refused")

    writes = [
        PlannedWrite(
            "Binary",
            "blob-0",
            {"resourceType": "Binary", "contentType": "a/b"},
            {},
            content={"c0": b"x" * 10},
        ),
        PlannedWrite("Organization", "org-refused", org("no"), {}, guard=refuse),
    ]
    with pytest.raises(Conflict):
        await store.write_atomically(writes, timeout=60)
    assert await store.db["content.files"].count_documents({}) == 0
    assert await store.db["content.chunks"].count_documents({}) == 0


# -- SIGKILL in the middle of a 200-entry transaction -------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``dmp-fhir serve`` in its own process, on a given database."""

    def __init__(self, mongodb_url: str, db: str, key_file: Path) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}/fhir"
        self.env = {
            **os.environ,
            "MONGODB_URL": mongodb_url,
            "DMP_FHIR_DB": db,
            "DMP_FHIR_PORT": str(self.port),
            "DMP_FHIR_BASE_URL": self.base,
            "DMP_FHIR_DEV_MODE": "true",
            "DMP_FHIR_DEV_KEY_FILE": str(key_file),
            "DMP_FHIR_TRANSACTION_TIMEOUT_SECONDS": "8",
            "DMP_FHIR_LOG_LEVEL": "warning",
        }
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dmp_fhir.cli", "serve"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                try:
                    if (await client.get(f"{self.base}/_health")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError("the server did not start")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()


@pytest.mark.parametrize("kill_when", ["claiming", "publishing"])
async def test_sigkill_mid_transaction_leaves_all_or_nothing(
    mongodb_url: str, tmp_path: Path, kill_when: str
) -> None:
    db_name = disposable_name("test", "crash")
    key_file = tmp_path / "dev-key.json"
    server = ServerProcess(mongodb_url, db_name, key_file)
    await server.start()
    key = load_or_create_dev_key(key_file)
    token = mint_token(
        {"client_id": "annuaire", "scope": "system/*.cruds"},
        key=key,
        issuer="dmp-fhir-dev",
        audience=server.base,
    )
    headers = {"Authorization": f"Bearer {token}"}
    marker = uuid.uuid4().hex[:8]
    # PUT with client ids: each version is claimed on its own (new server ids are claimed in
    # one insert per type), so the kill can land between two claims.
    bundle = tx(
        *(
            {
                "resource": {**org(f"crash {marker} {i}"), "id": f"crash-{marker}-{i}"},
                "request": {"method": "PUT", "url": f"Organization/crash-{marker}-{i}"},
            }
            for i in range(200)
        )
    )
    raw: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url)
    db = raw[db_name]
    try:
        async with httpx.AsyncClient(timeout=120) as client:
            request = asyncio.create_task(client.post(f"{server.base}", json=bundle, headers=headers))
            killed_at = None
            for _ in range(20000):
                claimed = await db["Organization_history"].count_documents({"_tx": {"$exists": True}})
                decided = await db[OUTCOMES].count_documents({})
                if (kill_when == "claiming" and 20 <= claimed < 200 and not decided) or (
                    kill_when == "publishing" and decided
                ):
                    server.kill()
                    killed_at = (claimed, decided)
                    break
                if request.done():
                    break
                await asyncio.sleep(0.002)
            with pytest.raises(httpx.TransportError):
                await request
            assert killed_at is not None, "the transaction finished before it could be killed"
        await server.start()  # the start-up recovery runs before the first request
        async with httpx.AsyncClient(base_url=server.base, headers=headers, timeout=60) as client:
            visible = await count(client, f"Organization?name=crash%20{marker}")
            state = {
                name: await db[name].count_documents({})
                for name in ("Organization", "Organization_history", TRANSACTIONS, OUTCOMES)
            }
            assert visible in (0, 200), (visible, killed_at, state)
            if kill_when == "publishing":
                assert visible == 200, (killed_at, state)  # decided before the kill: finished at start-up
            # Undecided claims are aborted once their deadline passes (8 s here).
            for _ in range(200):
                if await db[TRANSACTIONS].count_documents({}) == 0:
                    break
                await asyncio.sleep(0.1)
            assert await db[TRANSACTIONS].count_documents({}) == 0
            assert await db["Organization_history"].count_documents({"_tx": {"$exists": True}}) == 0
            after = await count(client, f"Organization?name=crash%20{marker}")
            assert after == visible
            assert await db["Organization"].count_documents({}) == after
            assert await db["Organization_history"].count_documents({}) == after
    finally:
        if server.process and server.process.poll() is None:
            server.kill()
        await drop_disposable(raw, db_name)
        await raw.close()


async def test_a_read_that_fails_after_the_writes_is_answered_in_its_entry(client: httpx.AsyncClient) -> None:
    """Reads run after the commit: a failing one cannot undo the writes, so it is reported in its
    own entry rather than as an error that would wrongly suggest nothing was stored."""
    marker = uuid.uuid4().hex
    response = await client.post(
        "",
        json=tx(
            post_entry(org(f"kept-{marker}")),
            {"request": {"method": "GET", "url": "Organization/no-such-organization"}},
        ),
    )
    assert response.status_code == 200, response.text
    created, read = response.json()["entry"]
    assert created["response"]["status"] == "201 Created"
    assert read["response"]["status"].startswith("404")
    assert read["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert await count(client, f"Organization?name=kept-{marker}") == 1
