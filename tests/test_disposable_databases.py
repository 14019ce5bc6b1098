"""Tests and benchmarks use databases of their own, and never drop anything else (issue 21).

The bug: ``Settings(db=...)`` silently gave ``dmp_fhir``, so every fixture and benchmark
shared — and dropped — the production database of whatever server ``MONGODB_URL`` named.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError
from pymongo import AsyncMongoClient

from dmp_fhir.config import Settings
from dmp_fhir.storage.disposable import NotDisposable, disposable_name, drop_disposable

from .conftest import make_settings, open_access_app

ROOT = Path(__file__).resolve().parent.parent
ON_SESSION_LOOP = pytest.mark.asyncio(loop_scope="session")


def test_db_is_settable_by_name_and_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(db="asked_for").db == "asked_for"
    assert Settings.model_validate({"db": "asked_for", "mongodb_url": "mongodb://x"}).db == "asked_for"
    assert Settings.model_validate({"mongodb_url": "mongodb://x"}).mongodb_url == "mongodb://x"
    monkeypatch.setenv("DMP_FHIR_DB", "from_env")
    assert Settings().db == "from_env"
    assert Settings(db="explicit").db == "explicit"


def test_unknown_settings_are_refused() -> None:
    with pytest.raises(ValidationError):
        Settings.model_validate({"dbname": "typo"})
    with pytest.raises(ValidationError):
        Settings(data_base="typo")  # type: ignore[call-arg]


def test_fixture_settings_name_their_own_database() -> None:
    first, second = make_settings("mongodb://x"), make_settings("mongodb://x")
    assert first.db.startswith("test_") and second.db.startswith("test_")
    assert first.db != second.db
    assert make_settings("mongodb://x", db=disposable_name("test", "mine")).db.startswith("test_mine_")


@ON_SESSION_LOOP
async def test_drop_guard_refuses_other_databases(mongodb_url: str) -> None:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongodb_url)
    try:
        for name in ("dmp_fhir", "production", "test_", "test_0123456789ab"):  # the last: not ours
            with pytest.raises(NotDisposable):
                await drop_disposable(client, name)
        with pytest.raises(ValueError):
            disposable_name("prod")
    finally:
        await client.close()


@ON_SESSION_LOOP
async def test_two_apps_never_share_a_database(mongodb_url: str) -> None:
    body = {"resourceType": "Organization", "name": "Isolation check"}
    async with open_access_app(mongodb_url) as first, open_access_app(mongodb_url) as second:
        first_db = first.state.database.db.name
        second_db = second.state.database.db.name
        assert first_db != second_db
        assert first_db == first.state.settings.db and second_db == second.state.settings.db
        await first.state.database.db["Organization"].insert_one({"_id": "only-in-first", **body})
        assert await second.state.database.db["Organization"].find_one({"_id": "only-in-first"}) is None
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongodb_url)
    try:
        names = await client.list_database_names()
        assert first_db not in names and second_db not in names  # dropped afterwards
    finally:
        await client.close()


@ON_SESSION_LOOP
async def test_benchmark_leaves_the_production_database_untouched(mongodb_url: str) -> None:
    """A benchmark run on a server that holds the record store: the store is still there after.

    On the session's own embedded engine the production database is the real default name; on a
    server named by ``MONGODB_URL`` a stand-in named through ``DMP_FHIR_DB`` plays its part, so
    that the test never creates a ``dmp_fhir`` database there.
    """
    on_own_engine = not os.environ.get("MONGODB_URL")
    production = "dmp_fhir" if on_own_engine else disposable_name("test", "production")
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongodb_url)
    marker = {"_id": f"marker-{os.getpid()}", "note": "a patient record store"}
    try:
        await client[production]["Patient"].insert_one(marker)
        env = {**os.environ, "MONGODB_URL": mongodb_url, "DMP_FHIR_DB": production}
        script = ROOT / "benchmarks" / "search.py"
        run = subprocess.run(
            [sys.executable, str(script), "--n", "60", "--patients", "3", "--queries", "2"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr[-2000:]
        assert await client[production]["Patient"].find_one({"_id": marker["_id"]}) == marker
    finally:
        await client[production]["Patient"].delete_one({"_id": marker["_id"]})
        if not on_own_engine:
            await drop_disposable(client, production)
        await client.close()
