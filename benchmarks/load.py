"""Load and soak: a realistic mix from several processes against a running server.

    .venv/bin/python benchmarks/load.py [--seconds 600] [--processes 4] [--concurrency 8]
    .venv/bin/python benchmarks/load.py --url http://host:8080/fhir --key-file K   # an existing server

Without ``--url`` it starts ``dmp-fhir serve`` (samples loaded, development tokens, the embedded
FerretDB unless ``MONGODB_URL`` is set) in its own process and samples that process's memory
(RSS) every few seconds. The mix, per request:

- 70 % MHD consumers: ITI-67 searches (``DocumentReference?patient&status`` with a type or
  without) and ITI-68 retrievals of what they found, by the patients' médecins traitants;
- 20 % ITI-65 feeds: a GP sends a Provide Document Bundle of 1 to 3 documents (~50 kB each);
- 10 % the patient: their access history (``AuditEvent?patient``) and consent changes
  (``$dmp-access`` grant, then revoke).

Printed: throughput, p50/p95/p99 per kind, errors (any 5xx, transport error, or unexpected
status), and the server's RSS at start, at the end and at its peak.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
from pymongo import MongoClient

from dmp_fhir.auth.signing import load_or_create_dev_key, mint_token
from dmp_fhir.mhd import SourceDocument, provide_bundle
from dmp_fhir.storage.disposable import disposable_name, drop_disposable_sync

ROOT = Path(__file__).resolve().parents[1]
#: (practitioner claims, their PractitionerRole, the patients whose médecin traitant they are)
GPS: list[tuple[dict[str, Any], str, list[str]]] = [
    (
        {"fhirUser": "Practitioner/pra-gp-martin", "profession": "10", "specialty": "SM54"},
        "PractitionerRole/prr-gp-martin",
        ["pat-001", "pat-004"],
    ),
    (
        {"fhirUser": "Practitioner/pra-gp-nguyen", "profession": "10", "specialty": "SM54"},
        "PractitionerRole/prr-gp-nguyen",
        ["pat-002", "pat-005"],
    ),
    (
        {"fhirUser": "Practitioner/pra-gp-benali", "profession": "10", "specialty": "SM54"},
        "PractitionerRole/prr-gp-benali",
        ["pat-003"],
    ),
]
TYPES = ["http://loinc.org|11488-4", "http://loinc.org|57833-6", "http://loinc.org|60591-5", None]
EXPECTED = {200, 201}


def _token(key: dict[str, Any], base: str, claims: dict[str, Any], scope: str) -> dict[str, str]:
    jwt = mint_token({**claims, "scope": scope}, key=key, issuer="dmp-fhir-dev", audience=base)
    return {"Authorization": f"Bearer {jwt}"}


async def _worker_loop(
    base: str, key: dict[str, Any], seconds: float, concurrency: int, seed: int
) -> dict[str, Any]:
    rng = random.Random(seed)
    gp_headers = [
        (_token(key, base, claims, "user/*.cruds"), role, patients) for claims, role, patients in GPS
    ]
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    found: dict[str, list[str]] = defaultdict(list)  # patient -> Binary ids seen in searches
    deadline = time.monotonic() + seconds

    async def one(client: httpx.AsyncClient) -> None:
        roll = rng.random()
        headers, role, patients = rng.choice(gp_headers)
        pid = rng.choice(patients)
        started = time.perf_counter()
        if roll < 0.70 and (roll < 0.55 or not found[pid]):
            kind = "ITI-67 search"
            params = {"patient": pid, "status": "current", "_count": "20"}
            code = rng.choice(TYPES)
            if code:
                params["type"] = code
            response = await client.get("/DocumentReference", params=params, headers=headers)
            if response.status_code == 200:
                for entry in response.json().get("entry", [])[:5]:
                    url = entry["resource"]["content"][0]["attachment"].get("url", "")
                    if url.startswith("Binary/"):
                        found[pid].append(url)
                del found[pid][:-50]
        elif roll < 0.70:
            kind = "ITI-68 retrieve"
            url = rng.choice(found[pid])
            response = await client.get(f"/{url}", headers={**headers, "Accept": "application/octet-stream"})
        elif roll < 0.90:
            kind = "ITI-65 feed"
            docs = [
                SourceDocument(os.urandom(50_000), title=f"CR {uuid.uuid4().hex[:6]}")
                for _ in range(rng.randint(1, 3))
            ]
            response = await client.post(
                "", json=provide_bundle(f"Patient/{pid}", role, docs), headers=headers
            )
        else:
            me = _token(key, base, {"fhirUser": f"Patient/{pid}", "patient": pid}, "patient/*.cruds")
            if roll < 0.95:
                kind = "patient history"
                response = await client.get(
                    "/AuditEvent", params={"patient": pid, "_count": "20"}, headers=me
                )
            else:
                kind = "consent change"
                action = rng.choice(["grant", "revoke"])
                body = {
                    "resourceType": "Parameters",
                    "parameter": [
                        {"name": "action", "valueCode": action},
                        {"name": "actor", "valueReference": {"reference": "Practitioner/pra-kine-girard"}},
                    ],
                }
                response = await client.post(f"/Patient/{pid}/$dmp-access", json=body, headers=me)
        latencies[kind].append(time.perf_counter() - started)
        if response.status_code not in EXPECTED:
            errors[f"{kind}: {response.status_code}"] += 1

    async def loop() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            while time.monotonic() < deadline:
                try:
                    await one(client)
                except httpx.HTTPError as exc:
                    errors[f"transport: {type(exc).__name__}"] += 1

    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return {"latencies": dict(latencies), "errors": dict(errors)}


def _worker(args: tuple[str, dict[str, Any], float, int, int]) -> dict[str, Any]:
    return asyncio.run(_worker_loop(*args))


def _rss_kib(pid: int) -> int:
    """The resident memory of the server process and its children (uvicorn runs in-process)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000 if ordered else 0.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_server(key_file: Path, db: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    env = {
        **os.environ,
        "DMP_FHIR_PORT": str(port),
        "DMP_FHIR_BASE_URL": base,
        "DMP_FHIR_DEV_MODE": "true",
        "DMP_FHIR_DEV_KEY_FILE": str(key_file),
        "DMP_FHIR_DB": db,
        "DMP_FHIR_LOG_LEVEL": "warning",
    }
    args = [sys.executable, "-m", "dmp_fhir.cli", "serve", "--load", str(ROOT / "samples")]
    if not os.environ.get("MONGODB_URL"):
        args.append("--ephemeral")
    process = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/_health", timeout=2).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise SystemExit("the server exited during start-up")
        time.sleep(0.5)
    process.kill()
    raise SystemExit("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent requests per process")
    parser.add_argument("--url", help="an already running server (its dev key via --key-file)")
    parser.add_argument("--key-file", type=Path)
    args = parser.parse_args()
    key_file = args.key_file or Path(tempfile.gettempdir()) / f"dmp-load-key-{uuid.uuid4().hex[:6]}.json"
    server = None
    db = disposable_name("load")
    if args.url:
        base = args.url.rstrip("/")
    else:
        load_or_create_dev_key(key_file)
        server, base = _start_server(key_file, db)
    key = load_or_create_dev_key(key_file)
    memory: list[int] = []
    try:
        pool = multiprocessing.get_context("spawn").Pool(args.processes)
        jobs = [(base, key, args.seconds, args.concurrency, seed) for seed in range(args.processes)]
        pending = pool.map_async(_worker, jobs)
        started = time.monotonic()
        while not pending.ready():
            if server is not None:
                memory.append(_rss_kib(server.pid))
            pending.wait(5)
        elapsed = time.monotonic() - started
        results = pending.get()
        pool.close()
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
            if os.environ.get("MONGODB_URL"):  # an --ephemeral embedded engine leaves nothing behind
                client: MongoClient[dict[str, Any]]
                with MongoClient(os.environ["MONGODB_URL"]) as client:
                    drop_disposable_sync(client, db)
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    for result in results:
        for kind, values in result["latencies"].items():
            latencies[kind] += values
        for kind, count in result["errors"].items():
            errors[kind] += count
    total = sum(len(v) for v in latencies.values())
    print(
        f"{args.processes} processes x {args.concurrency} concurrent requests for {args.seconds:.0f} s "
        f"against {base}: {total} requests, {total / elapsed:.1f} req/s"
    )
    for kind in sorted(latencies):
        values = latencies[kind]
        print(
            f"  {kind:<16} {len(values):>7} ({100 * len(values) / max(total, 1):4.1f} %)  "
            f"p50 {_pct(values, 0.5):7.1f} ms  p95 {_pct(values, 0.95):7.1f} ms  "
            f"p99 {_pct(values, 0.99):7.1f} ms"
        )
    print(f"errors: {sum(errors.values())}" + (f"  {dict(errors)}" if errors else ""))
    if memory:
        nonzero = [m for m in memory if m] or [0]
        print(
            f"server RSS: start {nonzero[0] / 1024:.0f} MiB, end {nonzero[-1] / 1024:.0f} MiB, "
            f"peak {max(nonzero) / 1024:.0f} MiB ({len(memory)} samples)"
        )
    if sum(errors.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
