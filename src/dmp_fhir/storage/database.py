"""Connection to MongoDB (or FerretDB) through PyMongo's async API, and the start-up indexes."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pymongo import AsyncMongoClient, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.monitoring import CommandListener

from .packing import TYPE_REGISTRY
from .shapes import index_models

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EngineInfo:
    """What the server at the other end is: it decides which MongoDB-only features we use."""

    name: str  # "mongodb" or "ferretdb"
    version: str
    backend: str = ""  # FerretDB's backend (postgresql / sqlite)

    @property
    def is_mongodb(self) -> bool:
        return self.name == "mongodb"


class Database:
    """Owns the client; hands out collections. One per process."""

    def __init__(self, url: str, name: str, *, listeners: Sequence[CommandListener] = ()) -> None:
        """``listeners``: PyMongo command monitors (the round-trip tests count commands)."""
        self.client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            url,
            tz_aware=True,
            serverSelectionTimeoutMS=10_000,
            uuidRepresentation="standard",
            type_registry=TYPE_REGISTRY,  # packed resources read back as dicts (packing.py)
            event_listeners=list(listeners),
        )
        self.db: AsyncDatabase[dict[str, Any]] = self.client[name]
        self.engine = EngineInfo("unknown", "")

    async def connect(self) -> EngineInfo:
        await self.db.command("ping")
        info = await self.db.command("buildInfo")
        if "ferretdb" in info or "ferretdbVersion" in info:
            ferret = info.get("ferretdb") or {}
            self.engine = EngineInfo(
                "ferretdb",
                str(ferret.get("version") or info.get("ferretdbVersion", "")),
                str(ferret.get("backend", "")),
            )
        else:
            self.engine = EngineInfo("mongodb", str(info.get("version", "")))
        log.info("database engine: %s %s %s", *(self.engine.name, self.engine.version, self.engine.backend))
        return self.engine

    async def ping(self) -> bool:
        try:
            await self.db.command("ping")
        except Exception:  # any driver error means "not ready"
            return False
        return True

    async def ensure_indexes(self, search_fields: dict[str, list[str]]) -> None:
        """Create the indexes every catalogued query shape needs (``storage/shapes.py``;
        idempotent). ``search_fields`` maps a resource type to the ``_s_`` fields that lead its
        searches. On the embedded FerretDB each one is mirrored as a GIN index (``devdb``)."""
        for collection, models in index_models(search_fields).items():
            await self._create_missing(collection, models)

    async def _create_missing(self, collection: str, models: list[IndexModel]) -> None:
        """Create the indexes a collection lacks.

        Asking FerretDB v1 (PostgreSQL backend) to create an index that already exists makes
        it drop the connection (a server-side panic), so only missing ones are sent.
        """
        coll = self.db[collection]
        existing = set((await coll.index_information()).keys())
        missing = [m for m in models if m.document["name"] not in existing]
        if missing:
            await coll.create_indexes(missing)

    async def close(self) -> None:
        await self.client.close()
