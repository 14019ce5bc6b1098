"""The embedded development database starts, serves MongoDB clients, keeps data when asked to,
and leaves nothing running once stopped."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest
from pymongo import MongoClient

from dmp_fhir.devdb import Backend, EmbeddedDatabase

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("MONGODB_URL")), reason="MONGODB_URL is set: no embedded database"
)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    """True while the process exists, zombies included (a zombie means nobody reaped it)."""
    return Path(f"/proc/{pid}").exists()


@pytest.mark.parametrize("backend", ["auto", "sqlite"])
def test_start_ping_insert_find_stop(backend: Backend) -> None:
    db = EmbeddedDatabase(backend=backend)
    db.start()
    try:
        assert db.url == f"mongodb://127.0.0.1:{db.port}/"
        ports = [db.port] + ([db.postgres_port] if db.postgres_port else [])
        pids = [p.pid for p in (db._ferretdb, db._postgres) if p is not None]
        scratch = db._tmp
        with MongoClient(db.url, serverSelectionTimeoutMS=5000) as client:
            assert client.admin.command("ping")["ok"] == 1
            things = client["devdb_test"]["things"]
            things.insert_one({"_id": "a", "tags": ["x", "y"], "n": 1})
            assert things.find_one({"tags": "y"}) == {"_id": "a", "tags": ["x", "y"], "n": 1}
    finally:
        db.stop()
    assert not any(_listening(p) for p in ports)
    assert not any(_alive(pid) for pid in pids)
    assert scratch is not None and not scratch.exists()
    db.stop()  # idempotent


def test_data_dir_survives_restart(tmp_path: Path) -> None:
    # tmp_path sits under a private (0700) folder: with PostgreSQL as root this also exercises
    # the fallback to /var/tmp, which we remove at the end.
    with EmbeddedDatabase(data_dir=tmp_path / "data") as db:
        pgdata = db.pgdata
        with MongoClient(db.url, serverSelectionTimeoutMS=5000) as client:
            client["devdb_test"]["kept"].insert_one({"_id": "k", "v": 42})
    try:
        with (
            EmbeddedDatabase(data_dir=tmp_path / "data") as db,
            MongoClient(db.url, serverSelectionTimeoutMS=5000) as client,
        ):
            assert db.pgdata == pgdata
            assert client["devdb_test"]["kept"].find_one({"_id": "k"}) == {"_id": "k", "v": 42}
    finally:
        if pgdata is not None and not pgdata.is_relative_to(tmp_path):
            shutil.rmtree(pgdata.parent, ignore_errors=True)
