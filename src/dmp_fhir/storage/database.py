"""Connection to MongoDB (or FerretDB) through PyMongo's async API, and the start-up indexes."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from ..registry import RESOURCE_TYPES

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

    def __init__(self, url: str, name: str) -> None:
        self.client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            url, tz_aware=True, serverSelectionTimeoutMS=10_000, uuidRepresentation="standard"
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
        """Create the indexes every query shape needs (idempotent; free on FerretDB).

        ``search_fields`` maps a resource type to the ``_s_`` fields that lead its queries.
        """
        for rtype in RESOURCE_TYPES.values():
            models = [
                IndexModel([("_lu", DESCENDING)]),
                IndexModel([("_deleted", ASCENDING), ("_lu", DESCENDING)]),
            ]
            models += [IndexModel([(f, ASCENDING)]) for f in search_fields.get(rtype.name, [])]
            await self._create_missing(rtype.collection, models)
            await self._create_missing(
                rtype.history_collection,
                [
                    IndexModel([("_rid", ASCENDING), ("_v", DESCENDING)], unique=True),
                    IndexModel([("_lu", DESCENDING)]),
                ],
            )

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
