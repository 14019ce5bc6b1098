"""Database round trips per request: an exact budget, and only catalogued query shapes (issue 20).

Every command a request sends is counted with PyMongo's command monitoring. The budgets are the
README's ("Round trips per request"); a change that adds a query to a hot path fails here,
whatever the machine's speed. Each query must also be led by a shape of
``dmp_fhir.storage.shapes`` (the catalogue that creates the indexes and that
``test_query_shapes.py`` explains on an engine with real indexes).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import pytest_asyncio
from pymongo import monitoring

from dmp_fhir.app import create_app
from dmp_fhir.mhd import SourceDocument, provide_bundle
from dmp_fhir.search.indexes import index_fields
from dmp_fhir.storage import Database
from dmp_fhir.storage.shapes import catalogued

from .lifecycle_helpers import access
from .policy_env import PolicyEnv, policy_env

pytestmark = pytest.mark.asyncio(loop_scope="session")

#: Commands per request, on a store holding the samples (see the README for the reasons).
BUDGET = {
    # document ∥ the caller's roles; Patient ∥ Consent ∥ record status; audit log; served copy
    "read": 7,
    # roles ∥ Patient ∥ Consent ∥ record status; the page; audit log; served copy
    "search": 7,
    # roles ∥ Patient ∥ Consent ∥ record; the Binary it names; masterIdentifier unique (search,
    # then its claim); history; current copy; audit (2) (a server-assigned id: no current copy to
    # read, nothing to converge, no dependents)
    "create": 11,
    # owner document (policy fields); current Binary; owner (write rule) ∥ facts (4);
    # history; current copy; is there a newer version?; audit (2)
    "binary": 12,
    # patient check; facts (4); 10 masterIdentifier look-ups (together) and their 10 claims;
    # journal entry;
    # 3 history inserts; decision; 3 current inserts; 21 marks dropped one by one (see
    # storage/journal.py); journal cleared (2); audit (2)
    "iti65": 58,
    # Patient; current Consent; history; current copy; newer version?; audit (2)
    "dmp-access": 7,
    # a first conditional create on its identifier (If-None-Exist): the search (the caller's
    # roles ∥ closed records ∥ patients they treat ∥ consents naming them; the match; audit (2)),
    # then the identifier claim; the current copy (a claimed id may be known to a concurrent
    # post: not "fresh"); the patient's facts (3); history; current copy; a newer version?;
    # audit (2). The claim costs one command, not being "fresh" two.
    "conditional-create": 17,
    # 10 DocumentReferences + their 10 Binaries (PUT, client ids): facts (4); per entry its
    # current copy, its history insert, its publication, its mark dropped and a newer-version
    # check; per Binary its owner; journal (4); audit (2)
    "transaction": 120,
}


@dataclass
class Commands(monitoring.CommandListener):
    """The commands sent while ``recording``: (name, collection, filter keys, sort keys)."""

    recording: bool = False
    seen: list[tuple[str, str, list[str], list[str]]] = field(default_factory=list)

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if not self.recording:
            return
        body = event.command
        target = body.get(event.command_name)
        query = body.get("filter") if isinstance(body.get("filter"), dict) else {}
        sort = body.get("sort") if isinstance(body.get("sort"), dict) else {}
        self.seen.append((event.command_name, str(target), list(query), list(sort)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        return None

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        return None


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def counted(mongodb_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    commands = Commands()
    # A long transaction deadline: the journal's periodic sweep stays out of the counts.
    async for env in policy_env(
        mongodb_url,
        tmp_path_factory.mktemp("round-trips"),
        listeners=[commands],
        transaction_timeout_seconds=3600,
    ):
        yield env, commands


GP = "gp_martin"  # médecin traitant of pat-001, pat-004, pat-007
AUTHOR = "PractitionerRole/prr-gp-martin"


Seen = list[tuple[str, str, list[str], list[str]]]


async def count(env: PolicyEnv, commands: Commands, request: Any) -> Seen:
    commands.seen.clear()
    commands.recording = True
    try:
        answer = await request
    finally:
        commands.recording = False
    assert answer.status_code < 300, answer.text
    return list(commands.seen)


def document(patient: str, binary_id: str) -> dict[str, Any]:
    bundle = provide_bundle(f"Patient/{patient}", AUTHOR, [SourceDocument(b"%PDF-1.4 x")])
    doc = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference")
    doc["content"][0]["attachment"]["url"] = f"Binary/{binary_id}"
    return doc


async def test_budgets(counted: Any) -> None:
    env, commands = counted
    gp = env.headers(GP)
    http = env.client
    seen: dict[str, list[tuple[str, str, list[str], list[str]]]] = {}
    found = (await http.get("/DocumentReference?patient=pat-001&status=current", headers=gp)).json()
    doc_id = found["entry"][0]["resource"]["id"]
    seen["read"] = await count(env, commands, http.get(f"/DocumentReference/{doc_id}", headers=gp))
    seen["search"] = await count(
        env, commands, http.get("/DocumentReference?patient=pat-001&status=current", headers=gp)
    )
    binary_id = uuid.uuid4().hex
    made = None

    async def create() -> Any:
        nonlocal made
        made = await http.post("/DocumentReference", json=document("pat-001", binary_id), headers=gp)
        return made

    seen["create"] = await count(env, commands, create())
    assert made is not None
    content = {
        "resourceType": "Binary",
        "id": binary_id,
        "contentType": "application/pdf",
        "securityContext": {"reference": f"DocumentReference/{made.json()['id']}"},
        "data": "JVBERi0xLjQgeA==",
    }
    seen["binary"] = await count(env, commands, http.put(f"/Binary/{binary_id}", json=content, headers=gp))
    docs = [SourceDocument(b"%PDF-1.4 " + bytes([i])) for i in range(10)]
    bundle = provide_bundle("Patient/pat-004", "PractitionerRole/prr-gp-martin", docs)
    seen["iti65"] = await count(env, commands, http.post("", json=bundle, headers=gp))
    seen["dmp-access"] = await count(
        env,
        commands,
        http.post(
            "/Patient/pat-001/$dmp-access",
            json=access("grant", "Practitioner/pra-kine-girard"),
            headers=env.patient("pat-001"),
        ),
    )
    condition = {
        "resourceType": "Condition",
        "identifier": [{"system": "urn:oid:1.2.250.1.999.7", "value": uuid.uuid4().hex}],
        "clinicalStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
            ]
        },
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "I10"}]},
        "subject": {"reference": "Patient/pat-001"},
        "recorder": {"reference": AUTHOR},
    }
    token = f"identifier=urn:oid:1.2.250.1.999.7|{condition['identifier'][0]['value']}"
    seen["conditional-create"] = await count(
        env, commands, http.post("/Condition", json=condition, headers={**gp, "If-None-Exist": token})
    )
    entries = []
    for i in range(10):
        doc_id, bin_id = f"rt-doc-{i}-{uuid.uuid4().hex[:8]}", f"rt-bin-{i}-{uuid.uuid4().hex[:8]}"
        doc = {**document("pat-007", bin_id), "id": doc_id}
        content = {**content, "id": bin_id, "securityContext": {"reference": f"DocumentReference/{doc_id}"}}
        entries += [
            {"resource": doc, "request": {"method": "PUT", "url": f"DocumentReference/{doc_id}"}},
            {"resource": content, "request": {"method": "PUT", "url": f"Binary/{bin_id}"}},
        ]
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    seen["transaction"] = await count(env, commands, http.post("", json=transaction, headers=gp))
    fields = index_fields()
    for name, commands_seen in seen.items():
        for command, collection, keys, sort in commands_seen:
            if command in ("find", "count", "delete", "update", "findAndModify") and (keys or sort):
                assert catalogued(collection, keys, sort, fields), (name, command, collection, keys, sort)
    assert {name: len(c) for name, c in seen.items()} == BUDGET


async def test_no_cache_across_requests_or_processes(counted: Any) -> None:
    """The policy reads its facts on every request: a block written through one server process
    holds at once in another (two apps, one database), and so does its removal."""
    env, _ = counted
    other = create_app(env.settings, Database(env.settings.mongodb_url or "", env.settings.db))
    async with other.router.lifespan_context(other):
        transport = httpx.ASGITransport(app=other)
        async with httpx.AsyncClient(transport=transport, base_url=env.client.base_url) as second:
            gp, me = env.headers(GP), env.patient("pat-004")
            path = "/DocumentReference?patient=pat-004&status=current"
            assert (await second.get(path, headers=gp)).status_code == 200
            for action, expected in (("block", 403), ("unblock", 200), ("block", 403), ("unblock", 200)):
                body = access(action, "Practitioner/pra-gp-martin")
                changed = await env.client.post("/Patient/pat-004/$dmp-access", json=body, headers=me)
                assert changed.status_code == 200, changed.text
                assert (await second.get(path, headers=gp)).status_code == expected, action
