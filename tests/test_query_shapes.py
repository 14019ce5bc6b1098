"""Every catalogued query shape is served by an index on an engine with real indexes (issue 20).

``dmp_fhir.storage.shapes`` lists what the server asks the database (and creates the indexes
from that list); ``test_round_trips.py`` checks that requests send nothing else. Here each shape
is ``explain()``-ed on DocumentDB + FerretDB v2 with the server's own indexes, and a plan that
scans a collection fails the test. ``MONGODB_URL`` naming MongoDB or that engine is used as is;
otherwise the engine is built and started (tests/indexed_engine.py).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio

from dmp_fhir.search.indexes import index_fields
from dmp_fhir.storage import Database
from dmp_fhir.storage.disposable import disposable_name, drop_disposable
from dmp_fhir.storage.shapes import all_shapes

from .indexed_engine import ENGINE_SOURCES, indexed_engine

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def engine_url() -> Iterator[str]:
    url = os.environ.get("MONGODB_URL")
    if url and os.environ.get("DMP_FHIR_INDEXED_ENGINE") == "1":
        yield url  # the suite already runs on MongoDB or on the indexed engine
        return
    if not ENGINE_SOURCES.exists():
        pytest.skip(f"no {ENGINE_SOURCES} (the indexed engine's sources, beside this checkout)")
    with indexed_engine() as started:
        yield started


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def indexed_db(engine_url: str) -> AsyncIterator[Database]:
    database = Database(engine_url, disposable_name("test", "shapes"))
    await database.connect()
    await database.ensure_indexes(index_fields())
    existing = set(await database.db.list_collection_names())
    for collection in {c for c, _ in all_shapes(index_fields())} - existing:
        await database.db.create_collection(collection)  # those looked up by _id alone have no index of ours
    try:
        yield database
    finally:
        await drop_disposable(database.client, database.db.name)
        await database.close()


def sample(key: str) -> Any:
    """A value of the kind the server compares ``key`` with (dates by range)."""
    if key.endswith("_lo"):
        return {"$gte": datetime(2026, 1, 1, tzinfo=UTC)}
    return {"_deleted": False, "_seq": 7, "_v": 1}.get(key, "x")


def scans(plan: Any) -> list[str]:
    """The collection scans anywhere in an explain output: MongoDB's COLLSCAN, PostgreSQL's
    Seq Scan, and DocumentDB's walk of a whole collection through its ``_id_`` index (an index
    condition on the shard key alone selects every document)."""
    found: list[str] = []
    if isinstance(plan, dict):
        if plan.get("stage") == "COLLSCAN" or plan.get("Node Type") == "Seq Scan":
            found.append(str(plan.get("stage") or plan.get("Node Type")))
        condition = plan.get("Index Cond")
        if isinstance(condition, str) and _shard_key_only(condition):
            found.append(f"{plan.get('Index Name')}: {condition}")
        for value in plan.values():
            found += scans(value)
    elif isinstance(plan, list):
        for item in plan:
            found += scans(item)
    return found


def _shard_key_only(condition: str) -> bool:
    return "shard_key_value" in condition and "AND" not in condition and "OPERATOR" not in condition


def uses_index(plan: Any) -> bool:
    """An index narrows the query: MongoDB's IXSCAN, or an index condition beyond the shard key."""
    if isinstance(plan, dict):
        if plan.get("stage") == "IXSCAN":
            return True
        condition = plan.get("Index Cond")
        if isinstance(condition, str) and not _shard_key_only(condition):
            return True
        return any(uses_index(v) for v in plan.values())
    if isinstance(plan, list):
        return any(uses_index(v) for v in plan)
    return False


async def test_every_shape_is_served_by_an_index(indexed_db: Database) -> None:
    shapes = all_shapes(index_fields())
    assert len(shapes) > 100  # every type, its history, every indexed search field
    failures, sorted_in_memory = [], []
    for collection, shape in shapes:
        query = {key: sample(key) for key in shape.keys}
        command: dict[str, Any] = {"find": collection, "filter": query, "limit": 21}
        if shape.sort:
            command["sort"] = dict(shape.sort)
        explained = await indexed_db.db.command({"explain": command, "verbosity": "queryPlanner"})
        if not shape.keys and "Plan" in explained.get("queryPlanner", {}):
            # A sort alone (type and system history): MongoDB walks the _lu index; DocumentDB
            # 0.106 never orders by an index, so there it sorts. Nothing else may.
            sorted_in_memory.append(collection)
            continue
        if scans(explained) or not uses_index(explained):
            failures.append(f"{collection} {query} {shape.sort}: {str(explained)[:400]}")
    assert not failures, "\n".join(failures)
    assert all(c.endswith("_history") for c in sorted_in_memory)


async def test_a_missing_index_is_caught(indexed_db: Database) -> None:
    """The check above can fail: a field without an index scans."""
    command = {"find": "DocumentReference", "filter": {"_no_index_here": "x"}}
    explained = await indexed_db.db.command({"explain": command, "verbosity": "queryPlanner"})
    assert scans(explained) or not uses_index(explained)
