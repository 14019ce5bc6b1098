"""Retention: ``dmp-fhir purge`` with the clock set forward (its own database: it purges all)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio

from dmp_fhir import cli
from dmp_fhir.audit import AuditTrail

from .lifecycle_helpers import create, create_body, new_ins, operation, raw_hits
from .policy_env import PolicyEnv, policy_env

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def env(mongodb_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PolicyEnv]:
    async for e in policy_env(mongodb_url, Path(tmp_path_factory.mktemp("keys"))):
        yield e


async def purge(env: PolicyEnv, now: datetime, capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert await cli._purge(env.settings, now) == 0
    return capsys.readouterr().out.splitlines()[:-1]


async def test_purge_follows_the_retention_rules(env: PolicyEnv, capsys: pytest.CaptureFixture[str]) -> None:
    ins = new_ins()
    pid = (await create(env, env.headers("gp_martin"), create_body(ins))).json()["id"]
    assert (await operation(env, env.patient(pid), f"/Patient/{pid}/$dmp-close")).status_code == 200
    now = datetime.now(UTC)

    # Today: nothing is due (pat-010 died in 2024: kept until 2034).
    assert await purge(env, now, capsys) == []
    # Five years on: the closed DMP is still kept, and may be reopened.
    assert await purge(env, now + timedelta(days=5 * 366), capsys) == []
    assert await env.database.db["Patient"].find_one({"_id": pid}) is not None

    # Eleven years on: the closed DMP and the deceased patient's record go.
    later = now + timedelta(days=11 * 366)
    lines = await purge(env, later, capsys)
    assert any(f"Patient/{pid} (closed" in line for line in lines), lines
    assert any("Patient/pat-010 (deceased on 2024-02-10)" in line for line in lines), lines
    assert len(lines) == 2
    assert set(await raw_hits(env, pid, ins)) <= {"AuditEvent", "AuditEvent_history"}
    assert set(await raw_hits(env, '"pat-010"')) <= {"AuditEvent", "AuditEvent_history"}
    assert await env.database.db["DocumentReference"].count_documents({"_p_keys": "SANTE_TRAVAIL"}) > 0
    assert await env.database.db["Observation"].count_documents({"_p_keys": "SANTE_TRAVAIL"}) == 1
    # Safe to run twice.
    assert await purge(env, later, capsys) == []

    # Forty-one years on: the occupational-health section goes, the rest of that DMP stays.
    far = now + timedelta(days=41 * 366)
    lines = await purge(env, far, capsys)
    assert any("occupational-health section of Patient/pat-006" in line for line in lines), lines
    # ... structured data of that section included (the exposure the occupational physician recorded)
    assert any("Observation 1" in line for line in lines if "pat-006" in line), lines
    for collection in ("Observation", "Observation_history"):
        assert await env.database.db[collection].count_documents({"_p_keys": "SANTE_TRAVAIL"}) == 0
    assert await env.database.db["Observation"].count_documents({"_p_patient": "pat-004"}) == 14
    assert await env.database.db["DocumentReference"].count_documents({"_p_keys": "SANTE_TRAVAIL"}) == 0
    assert (
        await env.database.db["DocumentReference_history"].count_documents({"_p_keys": "SANTE_TRAVAIL"}) == 0
    )
    assert await env.database.db["Patient"].find_one({"_id": "pat-006"}) is not None
    assert await purge(env, far, capsys) == []
    assert (await AuditTrail(env.database, base_url=env.settings.base_url).verify()).ok


async def test_an_interrupted_destruction_is_finished_by_purge(
    env: PolicyEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    pid = (await create(env, env.headers("gp_martin"), create_body(new_ins()))).json()["id"]
    await env.database.db["dmp_record"].update_one({"_id": pid}, {"$set": {"status": "destroying"}})
    assert (await env.client.get(f"/Patient/{pid}", headers=env.headers("gp_martin"))).status_code == 403
    lines = await purge(env, datetime.now(UTC), capsys)
    assert lines == [line for line in lines if pid in line] and len(lines) == 1
    assert await env.database.db["Patient"].find_one({"_id": pid}) is None


async def test_purge_command_line_accepts_an_iso_date() -> None:
    args = cli.build_parser().parse_args(["purge", "--now", "2040-01-01"])
    assert args.now == datetime(2040, 1, 1, tzinfo=UTC)
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["purge", "--now", "next year"])
