"""The per-request repository: the only door from the HTTP layer to the data.

Routes and operations receive a ``Repository`` (built per request with the caller's context)
and never touch the store or the driver. Every write computes the extracted search fields
in one place (``_fields``), so no path can store a resource that search cannot see.
"""

from __future__ import annotations

import re
import uuid
from urllib.parse import parse_qsl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .config import Settings
from .errors import BadRequest, Gone, MethodNotAllowed, NotFound, PreconditionFailed
from .registry import RESOURCE_TYPES, ResourceType
from .search.engine import SearchEngine, SearchRequest, SearchResult
from .search.extract import extract_search_fields
from .storage import ResourceStore, StoredVersion
from .validation import check_resource

ID_PATTERN = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ETAG = re.compile(r'^\s*(?:W/)?"?(\d+)"?\s*$')


def parse_etag(value: str | None) -> int | None:
    """The version in ``W/"3"`` (or ``"3"``, ``3``); 412 for anything else."""
    if value is None:
        return None
    match = _ETAG.match(value)
    if not match:
        raise PreconditionFailed(f"Unreadable If-Match value {value!r}; expected W/\"<version>\".")
    return int(match.group(1))


def check_id(rid: str) -> str:
    if not ID_PATTERN.match(rid):
        raise BadRequest(f"'{rid}' is not a valid FHIR id ([A-Za-z0-9-.]{{1,64}}).", code="value")
    return rid


def resource_type(name: str) -> ResourceType:
    rtype = RESOURCE_TYPES.get(name)
    if rtype is None:
        raise NotFound(f"Resource type '{name}' is not supported by this server.", code="not-supported")
    return rtype


@dataclass(frozen=True, slots=True)
class WriteResult:
    version: StoredVersion
    created: bool


class Repository:
    """CRUD and history on the store, for one caller."""

    def __init__(self, store: ResourceStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.search_engine = SearchEngine(
            store,
            base_url=settings.base_url,
            default_count=settings.default_page_size,
            max_count=settings.max_page_size,
        )

    # -- search -----------------------------------------------------------------------

    async def search(
        self, type_name: str, params: list[tuple[str, str]], *, strict: bool = False
    ) -> tuple[SearchRequest, SearchResult]:
        rtype = resource_type(type_name)
        request = await self.search_engine.compile(rtype.name, params, strict=strict)
        return request, await self.search_engine.execute(request)

    async def conditional_match(self, type_name: str, query: str) -> StoredVersion | None:
        """The one resource matching ``query`` (If-None-Exist and conditional writes).

        None when nothing matches; 412 when several do (FHIR's rule for conditional writes).
        """
        rtype = resource_type(type_name)
        params = parse_qsl(query.split("?", 1)[-1], keep_blank_values=True)
        if not params:
            raise BadRequest("A conditional request needs search parameters.", code="required")
        request = await self.search_engine.compile(rtype.name, params, strict=True)
        docs = await self.store.find(rtype.name, request.filter, limit=2)
        if len(docs) > 1:
            raise PreconditionFailed(
                f"The condition '{query}' matches several {type_name} resources.", code="multiple-matches"
            )
        return StoredVersion.from_doc(rtype.name, docs[0]) if docs else None

    # -- helpers ----------------------------------------------------------------------

    def _fields(self, rtype: str, resource: dict[str, Any] | None) -> dict[str, Any]:
        if resource is None:
            return {}
        return extract_search_fields(rtype, resource, base_url=self.settings.base_url)

    @staticmethod
    def _writable(rtype: ResourceType) -> None:
        if not rtype.client_writable:
            raise MethodNotAllowed(f"{rtype.name} resources are written by the server only.")

    # -- reads ------------------------------------------------------------------------

    async def read(self, type_name: str, rid: str) -> StoredVersion:
        rtype = resource_type(type_name)
        found = await self.store.read(rtype.name, check_id(rid))
        if found is None:
            raise NotFound(f"{type_name}/{rid} is not known.")
        if found.deleted:
            raise Gone(f"{type_name}/{rid} was deleted.", headers={"ETag": found.etag})
        return found

    async def read_any_version(self, type_name: str, rid: str) -> StoredVersion:
        """The current version or tombstone: history stays readable after a delete."""
        rtype = resource_type(type_name)
        found = await self.store.read(rtype.name, check_id(rid))
        if found is None:
            raise NotFound(f"{type_name}/{rid} is not known.")
        return found

    async def vread(self, type_name: str, rid: str, version: str) -> StoredVersion:
        rtype = resource_type(type_name)
        if not version.isdigit():
            raise NotFound(f"Version '{version}' of {type_name}/{rid} is not known.")
        found = await self.store.vread(rtype.name, check_id(rid), int(version))
        if found is None:
            raise NotFound(f"Version {version} of {type_name}/{rid} is not known.")
        if found.deleted:
            raise Gone(f"Version {version} of {type_name}/{rid} is a deletion.")
        return found

    # -- writes -----------------------------------------------------------------------

    async def create(self, type_name: str, body: Any, *, rid: str | None = None) -> WriteResult:
        """Create with a server-assigned id (the body's id, if any, is ignored as FHIR says)."""
        rtype = resource_type(type_name)
        self._writable(rtype)
        resource = check_resource(body, expected_type=rtype.name)
        new_id = rid or str(uuid.uuid4())
        resource = {**resource, "id": new_id}
        stored = await self.store.write(
            rtype.name, new_id, resource, self._fields(rtype.name, resource), create_only=True
        )
        return WriteResult(stored, created=True)

    async def update(
        self,
        type_name: str,
        rid: str,
        body: Any,
        *,
        if_match: int | None = None,
        skip_unchanged: bool = False,
    ) -> WriteResult:
        """Update, or create with the client's id when the resource does not exist yet."""
        rtype = resource_type(type_name)
        self._writable(rtype)
        check_id(rid)
        resource = check_resource(body, expected_type=rtype.name)
        body_id = resource.get("id")
        if body_id is None:
            raise BadRequest("An update must carry the resource id in the body.", code="required",
                             expression=(f"{rtype.name}.id",))
        if body_id != rid:
            raise BadRequest(
                f"The body's id '{body_id}' does not match the URL's id '{rid}'.",
                code="invalid",
                expression=(f"{rtype.name}.id",),
            )
        stored = await self.store.write(
            rtype.name,
            rid,
            resource,
            self._fields(rtype.name, resource),
            if_match=if_match,
            skip_unchanged=skip_unchanged,
        )
        return WriteResult(stored, created=stored.version == 1 and stored.changed)

    async def delete(self, type_name: str, rid: str, *, if_match: int | None = None) -> StoredVersion:
        rtype = resource_type(type_name)
        self._writable(rtype)
        return await self.store.write(rtype.name, check_id(rid), None, {}, if_match=if_match)

    # -- history ----------------------------------------------------------------------

    async def history(
        self,
        type_name: str,
        rid: str | None,
        *,
        count: int,
        cursor: str | None = None,
        since: datetime | None = None,
    ) -> tuple[list[StoredVersion], str | None]:
        """One page of versions, newest first, and the cursor of the next page (keyset paging:
        inserts between pages shift nothing)."""
        rtype = resource_type(type_name)
        query: dict[str, Any] = {}
        if since is not None:
            query["_lu"] = {"$gte": since}
        if rid is not None:
            query["_rid"] = check_id(rid)
            sort = [("_v", -1)]
            if cursor is not None:
                query["_v"] = {"$lt": _int_cursor(cursor)}
        else:
            sort = [("_lu", -1), ("_id", -1)]
            if cursor is not None:
                moment, hid = _keyset_cursor(cursor)
                keyset = [{"_lu": {"$lt": moment}}, {"_lu": moment, "_id": {"$lt": hid}}]
                if since is not None:
                    query = {"$and": [query, {"$or": keyset}]}
                else:
                    query["$or"] = keyset
        docs = await self.store.find(rtype.name, query, sort=sort, limit=count + 1, history=True)
        versions = [StoredVersion.from_doc(rtype.name, doc) for doc in docs]
        if len(versions) <= count:
            return versions, None
        last = versions[count - 1]
        if rid is not None:
            return versions[:count], str(last.version)
        millis = (last.last_updated - _EPOCH) // timedelta(milliseconds=1)
        return versions[:count], f"{millis}|{last.id}/{last.version}"


def _int_cursor(cursor: str) -> int:
    if not cursor.isdigit():
        raise BadRequest("Invalid paging cursor.", code="value")
    return int(cursor)


def _keyset_cursor(cursor: str) -> tuple[datetime, str]:
    stamp, _, hid = cursor.partition("|")
    if not stamp.isdigit() or not hid:
        raise BadRequest("Invalid paging cursor.", code="value")
    try:
        return _EPOCH + timedelta(milliseconds=int(stamp)), hid
    except OverflowError:
        raise BadRequest("Invalid paging cursor.", code="value") from None
