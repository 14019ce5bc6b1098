"""Stored resources are packed JSON (``storage/packing.py``), and every reader sees the same dict."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from bson.binary import Binary
from pymongo import AsyncMongoClient

from dmp_fhir.storage import Database, ResourceStore
from dmp_fhir.storage.disposable import disposable_name, drop_disposable
from dmp_fhir.storage.packing import PACKED_SUBTYPE, TYPE_REGISTRY, pack

from .fixtures import patient

ON_SESSION_LOOP = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def store(mongodb_url: str) -> AsyncIterator[ResourceStore]:
    database = Database(mongodb_url, disposable_name("test", "packing"))
    yield ResourceStore(database)
    await drop_disposable(database.client, database.db.name)
    await database.close()


def test_pack_leaves_its_argument_alone_and_keeps_what_is_not_json() -> None:
    doc = {"_id": "x", "resource": {"resourceType": "Patient", "name": [{"family": "Élodie"}]}}
    packed = pack(doc)
    assert isinstance(packed["resource"], Binary) and packed["resource"].subtype == PACKED_SUBTYPE
    expected = '{"resourceType":"Patient","name":[{"family":"Élodie"}]}'
    assert bytes(packed["resource"]).decode("utf-8") == expected
    assert isinstance(doc["resource"], dict)  # the caller's document is unchanged
    assert pack({"resource": None})["resource"] is None  # a deletion
    odd = {"resource": {"when": object()}}
    assert pack(odd)["resource"] is odd["resource"]  # not JSON: stored as a sub-document
    assert isinstance(pack({"resource": {"text": "\ud800"}})["resource"], dict)  # lone surrogate


@ON_SESSION_LOOP
async def test_a_written_resource_is_packed_and_reads_back_equal(
    store: ResourceStore, mongodb_url: str
) -> None:
    resource: dict[str, Any] = {**patient(), "birthDate": "1980-02-29", "multipleBirthInteger": 2}
    written = await store.write("Patient", "pk-1", resource, {"_s_family": ["martin"]})
    assert written.resource is not None and written.resource["name"] == resource["name"]
    raw_client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url)  # no registry
    try:
        raw = raw_client[store.db.name]
        for collection, key in (("Patient", "pk-1"), ("Patient_history", "pk-1/1")):
            stored = await raw[collection].find_one({"_id": key})
            assert stored is not None
            assert isinstance(stored["resource"], Binary) and stored["resource"].subtype == PACKED_SUBTYPE
    finally:
        await raw_client.close()
    read = await store.read("Patient", "pk-1")
    assert read is not None and read.resource == written.resource
    assert type(read.resource["multipleBirthInteger"]) is int
    found = await store.find("Patient", {"_s_family": "martin"})
    assert [d["resource"] for d in found] == [written.resource]


@ON_SESSION_LOOP
async def test_a_resource_stored_as_a_sub_document_reads_the_same(store: ResourceStore) -> None:
    """Stores written before packing keep working: the registry leaves sub-documents alone."""
    resource = {"resourceType": "Organization", "id": "old", "name": "Clinique d'avant"}
    await store.db["Organization"].insert_one({"_id": "old", "_rid": "old", "_v": 1, "resource": resource})
    doc = await store.read_doc("Organization", {"_id": "old"})
    assert doc is not None and doc["resource"] == resource


@ON_SESSION_LOOP
async def test_other_binaries_are_left_alone(mongodb_url: str) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url, type_registry=TYPE_REGISTRY)
    name = disposable_name("test", "packing")
    try:
        await client[name]["t"].insert_one({"_id": 1, "b": Binary(b"\x00\x01", 5), "c": b"raw"})
        doc = await client[name]["t"].find_one({"_id": 1})
        assert doc is not None and doc["b"] == Binary(b"\x00\x01", 5) and doc["c"] == b"raw"
    finally:
        await drop_disposable(client, name)
        await client.close()
