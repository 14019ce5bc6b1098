"""The everyday workload through HTTP on one server, three runs back to back, beside the raw driver.

    .venv/bin/python benchmarks/smoke.py [--runs 3] [--scale 1.0]

Starts ``dmp-fhir serve`` (a real uvicorn process, the samples loaded) on the engine that
``MONGODB_URL`` names, or on an embedded FerretDB started here, and drives it with one sequential
client (keep-alive), as the médecin traitant of the sample patients:

- create: ``POST DocumentReference`` then ``PUT Binary`` (its content, securityContext → it);
- read: ``GET DocumentReference/<id>`` of the documents created so far;
- search: ``DocumentReference?patient=…&status=current`` (first page);
- ITI-65: a Provide Document Bundle of 10 documents (with the List and 10 Binaries);
- transaction: a 100-entry transaction Bundle (50 DocumentReferences + their 50 Binaries).

The store grows with every run; a cost that grows with it shows as run N / run 1 < 1.
Beside each server figure, the raw driver's rate for the same logical operation on the same
engine, measured in the same run: ``insert_one`` of the two stored documents, ``find_one`` by
``_id``, the same patient+status query sorted by ``_lu`` (limit 20), ``insert_many`` of the
Bundle's resources. Printed: rates, p50, server/driver ratios, run N / run 1, the server's CPU per
request in each run, its RSS after the runs, and the time from a restart (on the grown store) to
its first answered request.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pymongo import DESCENDING, AsyncMongoClient

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import database_url

from dmp_fhir.auth.signing import load_or_create_dev_key, mint_token
from dmp_fhir.mhd import CLASS_SYSTEM, CONFIDENTIALITY, FORMAT_SYSTEM, LOINC, SourceDocument, provide_bundle
from dmp_fhir.storage.disposable import disposable_name, drop_disposable

ROOT = Path(__file__).resolve().parents[1]
PATIENTS = ("pat-001", "pat-004", "pat-007")  # Dr Martin is their médecin traitant
AUTHOR = "PractitionerRole/prr-gp-martin"
GP = {
    "fhirUser": "Practitioner/pra-gp-martin",
    "profession": "10",
    "specialty": "SM54",
    "rpps": "19999999001",
    "scope": "user/*.cruds",
}
CONTENT = b"%PDF-1.4 smoke benchmark " + b"x" * 2000


@dataclass
class Figure:
    count: int = 0
    seconds: float = 0.0
    samples: list[float] = field(default_factory=list)

    def add(self, elapsed: float, units: int = 1) -> None:
        self.count += units
        self.seconds += elapsed
        self.samples.append(elapsed)

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.samples) * 1000 if self.samples else 0.0


async def timed(figure: Figure, action: Callable[..., Awaitable[object]], *args: Any, units: int = 1) -> None:
    started = time.perf_counter()
    await action(*args)
    figure.add(time.perf_counter() - started, units)


def document(patient: str, binary_id: str) -> dict[str, Any]:
    """A consultation report as a GP's software posts it, its content in ``Binary/<binary_id>``."""
    return {
        "resourceType": "DocumentReference",
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:oid:2.25.{uuid.uuid4().int}"},
        "status": "current",
        "type": {"coding": [{"system": LOINC, "code": "11488-4"}]},
        "category": [{"coding": [{"system": CLASS_SYSTEM, "code": "10"}]}],
        "subject": {"reference": f"Patient/{patient}"},
        "date": "2026-11-20T10:00:00+01:00",
        "author": [{"reference": AUTHOR}],
        "securityLabel": [{"coding": [{"system": CONFIDENTIALITY, "code": "N"}]}],
        "content": [
            {
                "attachment": {
                    "contentType": "application/pdf",
                    "url": f"Binary/{binary_id}",
                    "size": len(CONTENT),
                    "hash": base64.b64encode(hashlib.sha1(CONTENT).digest()).decode(),
                },
                "format": {"system": FORMAT_SYSTEM, "code": "urn:ihe:iti:xds-sd:pdf:2008"},
            }
        ],
    }


def binary(binary_id: str, doc_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Binary",
        "id": binary_id,
        "contentType": "application/pdf",
        "securityContext": {"reference": f"DocumentReference/{doc_id}"},
        "data": base64.b64encode(CONTENT).decode(),
    }


def transaction_of(pairs: int, seq: int) -> dict[str, Any]:
    entries: list[dict[str, Any]] = []
    for i in range(pairs):
        doc_id, bin_id = f"tx{seq}-{i}-{uuid.uuid4().hex[:8]}", f"txb{seq}-{i}-{uuid.uuid4().hex[:8]}"
        entries.append({"resource": {**document(PATIENTS[i % len(PATIENTS)], bin_id), "id": doc_id},
                        "request": {"method": "PUT", "url": f"DocumentReference/{doc_id}"}})  # fmt: skip
        entries.append(
            {"resource": binary(bin_id, doc_id), "request": {"method": "PUT", "url": f"Binary/{bin_id}"}}
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    """User + system CPU the process has used so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Server:
    """``dmp-fhir serve`` as a child process on a given engine and database."""

    def __init__(self, url: str, db: str, key_file: Path) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}/fhir"
        self.env = {
            **os.environ,
            "MONGODB_URL": url,
            "DMP_FHIR_DB": db,
            "DMP_FHIR_PORT": str(self.port),
            "DMP_FHIR_BASE_URL": self.base,
            "DMP_FHIR_DEV_MODE": "true",
            "DMP_FHIR_DEV_KEY_FILE": str(key_file),
            "DMP_FHIR_LOG_LEVEL": "warning",
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, load: bool) -> None:
        args = [sys.executable, "-m", "dmp_fhir.cli", "serve"] + (
            ["--load", str(ROOT / "samples")] if load else []
        )
        self.process = subprocess.Popen(args, env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL)

    def wait_ready(self, headers: dict[str, str], timeout: float = 300) -> float:
        """Seconds until an authenticated search is answered."""
        started = time.monotonic()
        assert self.process is not None
        while time.monotonic() - started < timeout:
            with contextlib.suppress(httpx.HTTPError):
                answer = httpx.get(f"{self.base}/Patient/pat-001", headers=headers, timeout=30)
                if answer.status_code == 200:
                    return time.monotonic() - started
            if self.process.poll() is not None:
                raise SystemExit("the server exited during start-up")
            time.sleep(0.05)
        raise SystemExit("the server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@dataclass
class Workload:
    creates: int
    reads: int
    searches: int
    bundles: int
    transactions: int


OPERATIONS = ("create", "read", "search", "iti65", "transaction")
UNITS = {"create": "/s", "read": "/s", "search": "/s", "iti65": "docs/s", "transaction": "ms each"}


async def server_run(
    client: httpx.AsyncClient, work: Workload, created: list[str], seq: int
) -> dict[str, Figure]:
    figures = {name: Figure() for name in OPERATIONS}
    errors = 0

    def ok(answer: httpx.Response, *expected: int) -> httpx.Response:
        nonlocal errors
        if answer.status_code not in expected:
            errors += 1
            print(f"  ! {answer.request.method} {answer.request.url.path}: {answer.status_code} "
                  f"{answer.text[:300]}", file=sys.stderr)  # fmt: skip
        return answer

    async def create(patient: str, bin_id: str) -> None:
        made = ok(await client.post("/DocumentReference", json=document(patient, bin_id)), 201)
        doc_id = made.json().get("id", "")
        ok(await client.put(f"/Binary/{bin_id}", json=binary(bin_id, doc_id)), 201)
        created.append(doc_id)

    async def read(doc_id: str) -> None:
        ok(await client.get(f"/DocumentReference/{doc_id}"), 200)

    async def search(patient: str) -> None:
        ok(await client.get("/DocumentReference", params={"patient": patient, "status": "current"}), 200)

    async def post(bundle: dict[str, Any]) -> None:
        ok(await client.post("", json=bundle), 200)

    for i in range(work.creates):
        await timed(
            figures["create"], create, PATIENTS[i % len(PATIENTS)], f"b{seq}-{i}-{uuid.uuid4().hex[:8]}"
        )
    for _ in range(work.reads):
        await timed(figures["read"], read, random.choice(created))
    for i in range(work.searches):
        await timed(figures["search"], search, PATIENTS[i % len(PATIENTS)])
    for i in range(work.bundles):
        docs = [SourceDocument(CONTENT, title=f"CR {seq}-{i}-{k}") for k in range(10)]
        bundle = provide_bundle(f"Patient/{PATIENTS[i % len(PATIENTS)]}", AUTHOR, docs)
        await timed(figures["iti65"], post, bundle, units=10)
    for i in range(work.transactions):
        await timed(figures["transaction"], post, transaction_of(50, seq * 1000 + i))
    if errors:
        print(f"  run {seq}: {errors} unexpected answers", file=sys.stderr)
    return figures


async def driver_run(db: Any, server_db: Any, work: Workload, created: list[str]) -> dict[str, Figure]:
    """The same logical operations through PyMongo on the same engine (scratch collections for
    writes, the server's own collections for reads and searches)."""
    figures = {name: Figure() for name in OPERATIONS}

    async def create(patient: str) -> None:
        rid, bin_id = uuid.uuid4().hex, uuid.uuid4().hex
        fields = {"_s_patient": f"Patient/{patient}", "_s_status": "current"}
        await db["raw_DocumentReference"].insert_one(
            {"_id": rid, "resource": document(patient, bin_id), **fields}
        )
        await db["raw_Binary"].insert_one({"_id": bin_id, "resource": binary(bin_id, rid)})

    async def read(doc_id: str) -> None:
        await server_db["DocumentReference"].find_one({"_id": doc_id})

    async def search(patient: str) -> None:
        query = {"_s_patient": f"Patient/{patient}", "_s_status": "current", "_deleted": False}
        await server_db["DocumentReference"].find(query).sort("_lu", DESCENDING).limit(20).to_list(None)

    async def insert(collection: str, rows: list[dict[str, Any]]) -> None:
        await db[collection].insert_many(rows)

    def rows_of(bundle: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"_id": uuid.uuid4().hex, "resource": e["resource"]} for e in bundle["entry"]]

    for i in range(work.creates):
        await timed(figures["create"], create, PATIENTS[i % len(PATIENTS)])
    for _ in range(work.reads):
        await timed(figures["read"], read, random.choice(created))
    for i in range(work.searches):
        await timed(figures["search"], search, PATIENTS[i % len(PATIENTS)])
    for i in range(work.bundles):
        docs = [SourceDocument(CONTENT) for _ in range(10)]
        rows = rows_of(provide_bundle(f"Patient/{PATIENTS[i % len(PATIENTS)]}", AUTHOR, docs))
        await timed(figures["iti65"], insert, "raw_bundle", rows, units=10)
    for i in range(work.transactions):
        await timed(figures["transaction"], insert, "raw_transaction", rows_of(transaction_of(50, i)))
    return figures


def value(figure: Figure, name: str) -> float:
    """The figure in its unit: a rate, or milliseconds per transaction (lower is better)."""
    return figure.seconds / figure.count * 1000 if name == "transaction" and figure.count else figure.rate


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the per-run operation counts")
    args = parser.parse_args()
    s = args.scale
    work = Workload(creates=round(200 * s), reads=round(300 * s), searches=round(200 * s),
                    bundles=max(1, round(10 * s)), transactions=max(1, round(3 * s)))  # fmt: skip
    key_file = Path(tempfile.gettempdir()) / f"dmp-smoke-key-{uuid.uuid4().hex[:6]}.json"
    key = load_or_create_dev_key(key_file)
    with database_url() as (url, description):
        db_name = disposable_name("bench", "smoke")
        server = Server(url, db_name, key_file)
        token = mint_token(GP, key=key, issuer="dmp-fhir-dev", audience=server.base)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
        raw: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, tz_aware=True)
        scratch_name = disposable_name("bench", "smoke_driver")
        print(f"engine: {description}; per run: {work}")
        server.start(load=True)
        try:
            first_start = server.wait_ready(headers)
            print(f"start with the samples loaded: {first_start:.1f} s")
            created: list[str] = []
            results: list[tuple[dict[str, Figure], dict[str, Figure]]] = []
            limits = httpx.Limits(max_keepalive_connections=1, max_connections=1)
            async with httpx.AsyncClient(
                base_url=server.base, headers=headers, timeout=120, limits=limits
            ) as http:
                for run in range(1, args.runs + 1):
                    started = time.perf_counter()
                    assert server.process is not None
                    cpu_before = _cpu_seconds(server.process.pid)
                    ours = await server_run(http, work, created, run)
                    cpu = _cpu_seconds(server.process.pid) - cpu_before
                    wall = sum(f.seconds for f in ours.values())
                    requests = sum(len(ours[n].samples) for n in OPERATIONS) + work.creates  # + Binary PUTs
                    theirs = await driver_run(raw[scratch_name], raw[db_name], work, created)
                    results.append((ours, theirs))
                    print(f"run {run} done in {time.perf_counter() - started:.0f} s "
                          f"({len(created)} documents created so far); the server process used "
                          f"{cpu:.1f} s of CPU in {wall:.1f} s of requests "
                          f"({1000 * cpu / max(requests, 1):.1f} ms per request)")  # fmt: skip
            assert server.process is not None
            rss = _rss_mib(server.process.pid)
            server.stop()
            server.start(load=False)
            restart = server.wait_ready(headers)
        finally:
            server.stop()
            await drop_disposable(raw, db_name)
            await drop_disposable(raw, scratch_name)
            await raw.close()
    print()
    header = ("operation", "run", "server", "p50 ms", "driver", "ratio", "run N/1")
    print("{:<13} {:>3} {:>16} {:>8} {:>16} {:>6} {:>8}".format(*header))
    for name in OPERATIONS:
        first = value(results[0][0][name], name)
        for run, (ours, theirs) in enumerate(results, start=1):
            mine, ref = value(ours[name], name), value(theirs[name], name)
            ratio = (ref / mine if name == "transaction" else mine / ref) if mine and ref else 0.0
            trend = (first / mine if name == "transaction" else mine / first) if mine and first else 0.0
            print(f"{name:<13} {run:>3} {mine:>8.1f} {UNITS[name]:<7} {ours[name].p50_ms:>8.1f} "
                  f"{ref:>8.1f} {UNITS[name]:<7} {ratio:>6.2f} {trend:>8.2f}")  # fmt: skip
    print(f"server RSS after {args.runs} runs: {rss:.0f} MiB; restart to first answer: {restart:.1f} s")
    print("ratio: server/driver (transaction: driver ms / server ms); run N/1: 1.00 = flat, < 1 slower")


if __name__ == "__main__":
    asyncio.run(main())
