"""Writing the trail: group commit, so that no answer leaves before its event is stored.

Each request awaits the batch that carries its event (one ``insert_many`` for everything the
concurrent requests produced meanwhile): under load the cost per event falls, and an event is
never lost because the answer waits for it. One writer task per process chains the events;
across processes the unique ``_seq`` index decides, and a loser re-reads the head and re-chains.
Events go to ``AuditEvent_history`` first (the append-only log the chain covers), then to the
``AuditEvent`` collection that reads and searches use; start-up makes every served copy equal
its log entry again (a crash between the two writes, or a copy deleted or altered by hand).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from typing import Any, Protocol

from ..search.extract import extract_search_fields
from ..storage import Database
from ..storage.audit_copies import compare
from ..storage.audit_log import AuditLog, ChainConflict, RepairResult
from ..storage.store import now_utc
from .chain import GENESIS, ChainReport, event_hash, verify_chain
from .events import AuditRecord, build_audit_event

log = logging.getLogger(__name__)

MAX_BATCH = 500
#: Labels an event inherits from the documents it touched (it is hidden like them).
HIDING_LABELS = frozenset({"INVISIBLE_PATIENT", "INVISIBLE_REPRESENTANTS_LEGAUX"})
SECRET_LABEL = "CONNEXION_SECRETE"


class Auditor(Protocol):
    async def record(self, record: AuditRecord) -> None: ...


class NullAuditor:
    """Records nothing: reference benchmarks only (auditing off)."""

    async def record(self, record: AuditRecord) -> None:
        return None


class AuditTrail:
    """The production auditor (see the module docstring)."""

    def __init__(self, database: Database, *, base_url: str, source: str = "dmp-fhir") -> None:
        self.log = AuditLog(database)
        self.base_url = base_url
        self.source = source
        self._pending: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._head: tuple[int, str] | None = None
        self._floor = 0  # a link known to exist: where the search for the head starts
        self._repair: asyncio.Task[RepairResult] | None = None

    async def start(self, *, full_repair: bool = True) -> None:
        """Restore what a crash left only in the log (the newest links: a few lookups) before
        the first request; then, in the background, check every served copy against the log
        and repair it (``repair``): a whole-log walk must not delay start-up."""
        await self.log.ensure_index()
        copied = await self.log.repair_tail()
        if copied:
            log.warning("audit: %d events found only in the log were restored", copied)
        if full_repair:
            self._repair = asyncio.create_task(self._background_repair(), name="audit-repair")
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def repair(self) -> RepairResult:
        """Make every served copy equal its log entry (``AuditLog.repair``); log what changed."""
        repaired = await self.log.repair()
        if repaired.restored:
            log.warning("audit: %d served events missing were restored from the log (#%s)",
                        len(repaired.restored), _seqs(repaired.restored))  # fmt: skip
        if repaired.rewritten:
            log.warning("audit: %d served events that differed from the log were rewritten (#%s)",
                        len(repaired.rewritten), _seqs(repaired.rewritten))  # fmt: skip
        if repaired.removed:
            log.warning("audit: %d served events absent from the log were removed: %s",
                        len(repaired.removed), ", ".join(repaired.removed[:20]))  # fmt: skip
        return repaired

    async def _background_repair(self) -> RepairResult:
        try:
            return await self.repair()
        except Exception:  # the server keeps serving; `dmp-fhir audit verify` will tell
            log.exception("audit: the start-up check of the served copies failed")
            raise

    async def repaired(self) -> RepairResult | None:
        """Wait for the start-up repair (None if there was none); its error, if it failed."""
        return await self._repair if self._repair is not None else None

    async def stop(self) -> None:
        if self._repair is not None:
            if not self._repair.done():
                self._repair.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._repair
            self._repair = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._pending:  # flush what is left, in order
            await self._flush(self._take())

    async def record(self, record: AuditRecord) -> None:
        """Store the record's events (one per patient and visibility); return once stored."""
        parts = record.split()
        if len(parts) == 1:
            await self._record_one(parts[0])
        else:
            await asyncio.gather(*(self._record_one(part) for part in parts))

    async def _record_one(self, record: AuditRecord) -> None:
        moment = now_utc()
        # A refused request may carry a NUL (in a URL id, a header): the database refuses NUL in
        # strings, and one bad event would fail the whole batch of events written with it.
        resource = _scrub(build_audit_event(record, moment=moment, source=self.source))
        labels = set(record.labels) & HIDING_LABELS
        if record.secret:
            labels.add(SECRET_LABEL)
        fields = {
            **extract_search_fields("AuditEvent", resource, base_url=self.base_url),
            "_p_patient": sorted(record.patients),
            "_p_labels": sorted(labels),
            "_lu": moment,
        }
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(({"resource": resource, **fields}, future))
        self._wake.set()
        if self._task is None:  # not started (internal tools): write it ourselves
            await self._flush(self._take())
        await future

    def _take(self) -> list[tuple[dict[str, Any], asyncio.Future[None]]]:
        batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        return batch

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                await self._flush(self._take())

    async def _flush(self, batch: list[tuple[dict[str, Any], asyncio.Future[None]]]) -> None:
        try:
            await self._append([doc for doc, _ in batch])
        except Exception as exc:  # the requests waiting on this batch fail: nothing is lost silently
            log.exception("audit write failed")
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for _, future in batch:
            if not future.done():
                future.set_result(None)

    async def _append(self, docs: list[dict[str, Any]]) -> None:
        """Chain and store ``docs`` (log first, then the served copies)."""
        remaining = docs
        for _ in range(100):
            if self._head is None:
                seq, digest = await self.log.head(at_least=self._floor)
                self._head = (seq, digest or GENESIS)
            seq, previous = self._head
            chained: list[dict[str, Any]] = []
            for doc in remaining:
                seq += 1
                resource = doc["resource"]
                rid = resource["id"]
                resource["meta"] = {"versionId": "1", "lastUpdated": resource["recorded"]}
                digest = event_hash(previous, resource)
                chained.append(
                    {
                        **doc,
                        "_id": f"{rid}/1",
                        "_rid": rid,
                        "_v": 1,
                        "_deleted": False,
                        "_seq": seq,
                        "_prev": previous,
                        "_hash": digest,
                    }
                )
                previous = digest
            try:
                await self.log.append(chained)
            except ChainConflict as conflict:
                await self.log.serve(chained[: conflict.written])
                remaining = remaining[conflict.written :]
                # Another process took the next link, which therefore exists: look from there.
                self._floor = self._head[0] + conflict.written + 1
                self._head = None
                continue
            self._head = (seq, previous)
            await self.log.serve(chained)
            return
        raise RuntimeError("could not append to the audit chain (too much contention)")

    async def verify(self) -> ChainReport:
        """The chain, and every served copy against its log entry. A difference is confirmed
        by reading both again, so events written while ``verify`` runs are not reported."""
        report = await verify_chain(self.log.in_order(), await self.log.served_copies())
        confirmed = []
        for difference in report.served:
            entry, copy = await self.log.entry_and_copy(difference.event_id)
            if entry is None and copy is None:
                continue
            if entry is not None and entry.get("_seq") == difference.seq and compare(entry, copy) is None:
                continue
            confirmed.append(difference)
        dropped = len(report.served) - len(confirmed)
        return replace(report, served=tuple(confirmed), served_problems=report.served_problems - dropped)


def _seqs(seqs: list[int], limit: int = 20) -> str:
    shown = ", ".join(str(s) for s in seqs[:limit])
    return shown + (", …" if len(seqs) > limit else "")


def _scrub(value: Any) -> Any:
    """``value`` with every NUL character in its strings (keys too) replaced by U+FFFD."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value
