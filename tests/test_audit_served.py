"""Issue 17: ``verify`` covers the served AuditEvent copies, and start-up repair restores them.

Only the log is hash-chained, but the patient's view reads the served copies: a deleted copy,
or one whose ``_s_patient``/``_p_patient`` was changed, hides a break-glass access from the
patient while the chain holds. ``verify`` must name each such copy by sequence number, and the
repair (run by ``AuditTrail.start``) must put the log's version back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from dmp_fhir.audit import AuditTrail
from dmp_fhir.cli import _repair_audit, _verify_audit

from .policy_env import PolicyEnv, policy_env

pytestmark = pytest.mark.asyncio(loop_scope="session")
BREAK_GLASS = {"patient": "pat-002", "purpose": "ETREAT,BTG"}


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def env(mongodb_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PolicyEnv]:
    async for e in policy_env(mongodb_url, Path(tmp_path_factory.mktemp("keys"))):
        yield e


async def break_glass_events(env: PolicyEnv) -> list[str]:
    """The ids of the break-glass events the patient pat-002 sees."""
    answer = await env.client.get("/AuditEvent", headers=env.patient("pat-002"), params=BREAK_GLASS)
    assert answer.status_code == 200
    return [e["resource"]["id"] for e in answer.json().get("entry", [])]


async def emergency_access(env: PolicyEnv) -> dict[str, Any]:
    """An emergency physician reads pat-002's record; returns the log entry of that access."""
    read = await env.client.get(
        "/DocumentReference/doc-002-irm", headers=env.headers("urgences", purpose_of_use="ETREAT")
    )
    assert read.status_code == 200
    entry = await env.database.db["AuditEvent_history"].find_one(
        {"_p_patient": "pat-002"}, sort=[("_seq", -1)]
    )
    assert entry is not None and entry["resource"]["purposeOfEvent"][0]["coding"][0]["code"] == "ETREAT"
    return entry


async def test_verify_names_each_wrong_served_copy_and_repair_restores_them(
    env: PolicyEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    trail = AuditTrail(env.database, base_url=env.settings.base_url)
    deleted, altered_s, altered_p = [await emergency_access(env) for _ in range(3)]
    assert {deleted["_rid"], altered_s["_rid"], altered_p["_rid"]} <= set(await break_glass_events(env))
    clean = await trail.verify()
    assert clean.ok and clean.served_problems == 0 and clean.checked > 3

    served = env.database.db["AuditEvent"]
    await served.delete_one({"_id": deleted["_rid"]})
    await served.update_one({"_id": altered_s["_rid"]}, {"$set": {"_s_patient": ["Patient/pat-999"]}})
    await served.update_one({"_id": altered_p["_rid"]}, {"$set": {"_p_patient": ["pat-999"]}})
    forged = {**altered_p, "_id": "forged-event", "_rid": "forged-event", "_seq": 10**9}
    forged["resource"] = {**altered_p["resource"], "id": "forged-event"}
    await served.insert_one(forged)
    # The chain itself holds, yet the patient no longer sees two of the accesses...
    remaining = set(await break_glass_events(env))
    assert not {deleted["_rid"], altered_p["_rid"]} & remaining

    report = await trail.verify()  # ... and verify says so, event by event
    assert report.chain_ok and not report.ok and report.served_problems == 4
    by_seq = {d.seq: d for d in report.served}
    assert by_seq[deleted["_seq"]].problem == "the served copy is missing"
    assert by_seq[deleted["_seq"]].event_id == deleted["_rid"]
    assert by_seq[altered_s["_seq"]].problem == "the served copy differs from the log in _s_patient"
    assert by_seq[altered_p["_seq"]].problem == "the served copy differs from the log in _p_patient"
    assert by_seq[10**9].problem == "a served event that is not in the log"
    assert f"event #{deleted['_seq']} (AuditEvent/{deleted['_rid']})" in str(by_seq[deleted["_seq"]])

    # ``dmp-fhir audit verify`` prints each one and exits 1.
    assert await _verify_audit(env.settings) == 1
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("audit chain intact: ")
    assert (
        f"served copy wrong: event #{altered_p['_seq']} (AuditEvent/{altered_p['_rid']}): "
        "the served copy differs from the log in _p_patient" in printed
    )
    assert printed[-1].startswith("4 served AuditEvent(s) differ from the log")

    repaired = await trail.log.repair()  # what AuditTrail.start runs
    assert repaired.restored == [deleted["_seq"]]
    assert sorted(repaired.rewritten) == sorted([altered_s["_seq"], altered_p["_seq"]])
    assert repaired.removed == ["forged-event"]
    assert (await trail.verify()).ok
    assert await _verify_audit(env.settings) == 0
    assert "served copies: all" in capsys.readouterr().out
    assert {deleted["_rid"], altered_s["_rid"], altered_p["_rid"]} <= set(await break_glass_events(env))
    assert len(await trail.log.repair()) == 0  # nothing left to do


async def test_a_served_copy_altered_in_its_resource_is_reported(
    env: PolicyEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    trail = AuditTrail(env.database, base_url=env.settings.base_url)
    entry = await emergency_access(env)
    served = env.database.db["AuditEvent"]
    copy = await served.find_one({"_id": entry["_rid"]})
    assert copy is not None
    altered = {**copy["resource"], "outcome": "4"}  # resources are stored packed (storage/packing.py)
    await served.update_one({"_id": entry["_rid"]}, {"$set": {"resource": altered, "_p_labels": ["X"]}})
    report = await trail.verify()
    assert [(d.seq, d.problem) for d in report.served] == [
        (entry["_seq"], "the served copy differs from the log in _p_labels, resource")
    ]
    assert await _repair_audit(env.settings) == 0  # ``dmp-fhir audit repair``
    assert "served copies: 0 restored, 1 rewritten, 0 removed" in capsys.readouterr().out
    assert (await trail.verify()).ok


async def test_start_up_repairs_an_old_copy_not_only_the_tail(env: PolicyEnv) -> None:
    """The quick start-up repair only walks back from the head while copies are missing: an
    early copy deleted stayed deleted. The start-up check of every copy restores it."""
    trail = AuditTrail(env.database, base_url=env.settings.base_url)
    first = await env.database.db["AuditEvent_history"].find_one({"_seq": 1})
    assert first is not None
    await env.database.db["AuditEvent"].delete_one({"_id": first["_rid"]})
    await trail.start()
    try:
        repaired = await trail.repaired()  # the whole-log check runs in the background
        assert repaired is not None and repaired.restored == [1]
        copy = await env.database.db["AuditEvent"].find_one({"_id": first["_rid"]})
        assert copy is not None and copy["resource"] == first["resource"] and copy["_seq"] == 1
    finally:
        await trail.stop()
    assert (await trail.verify()).ok
