"""Document ingest through ITI-65 (Provide Document Bundle) against raw driver inserts.

    .venv/bin/python benchmarks/ingest.py [--seconds 10] [--concurrency 8] [--size 50000]

A GP feeds documents of ~50 kB (PDF-like random content) for their patients, in transaction
Bundles of 1 and of 10 documents, with the access policy, the audit trail and the journal that
makes each Bundle all-or-nothing. The reference is the raw driver writing the same data to the
same database (one ``insert_many`` per Bundle: the List, the DocumentReferences, the Binaries),
with the same concurrency. Printed: documents per second and the server/driver ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BASE, bearer, database_url, dev_settings

from dmp_fhir.app import create_app
from dmp_fhir.loader import load_paths
from dmp_fhir.mhd import SourceDocument, provide_bundle
from dmp_fhir.repository import Repository
from dmp_fhir.storage import Database, ResourceStore
from dmp_fhir.storage.disposable import drop_disposable

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
#: pat-001 and pat-004 have Dr Martin as their médecin traitant.
PATIENTS = ("Patient/pat-001", "Patient/pat-004")
AUTHOR = "PractitionerRole/prr-gp-martin"
GP = {
    "fhirUser": "Practitioner/pra-gp-martin",
    "profession": "10",
    "specialty": "SM54",
    "scope": "user/*.cruds",
}


def bundle_of(n: int, size: int, seq: int) -> dict[str, Any]:
    docs = [SourceDocument(os.urandom(size), title=f"CR {seq}-{i}") for i in range(n)]
    return provide_bundle(PATIENTS[seq % len(PATIENTS)], AUTHOR, docs)


def raw_documents(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """What the driver reference writes: the Bundle's resources, ids assigned, as documents."""
    out = []
    for entry in bundle["entry"]:
        resource = {**entry["resource"], "id": str(uuid.uuid4())}
        out.append({"_id": resource["id"], "resource": resource})
    return out


async def run(send: Any, n_docs: int, size: int, seconds: float, concurrency: int) -> tuple[float, int]:
    deadline = time.perf_counter() + seconds
    done = 0
    seq = 0

    async def worker() -> None:
        nonlocal done, seq
        while time.perf_counter() < deadline:
            seq += 1
            await send(bundle_of(n_docs, size, seq))
            done += n_docs

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - started), done


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--size", type=int, default=50_000)
    args = parser.parse_args()
    with database_url() as (url, engine):
        key_file = Path(f"/tmp/dmp-bench-key-{uuid.uuid4().hex[:6]}.json")
        settings = dev_settings(url, key_file)
        database = Database(url, settings.db)
        app = create_app(settings, database)
        async with app.router.lifespan_context(app):
            await load_paths(Repository.internal(ResourceStore(database), settings, "bench"), [SAMPLES])
            headers = bearer(settings, GP)
            print(
                f"engine: {engine}; ITI-65 by a GP for their patients, {args.size} bytes per document; "
                f"{args.concurrency} concurrent senders, {args.seconds:.0f} s per figure"
            )
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=120) as client:

                async def via_server(bundle: dict[str, Any]) -> None:
                    response = await client.post("", json=bundle, headers=headers)
                    assert response.status_code == 200, response.text[:300]

                async def via_driver(bundle: dict[str, Any]) -> None:
                    await database.db["raw_ingest"].insert_many(raw_documents(bundle))

                for n_docs in (1, 10):
                    server, sent = await run(via_server, n_docs, args.size, args.seconds, args.concurrency)
                    driver, _ = await run(via_driver, n_docs, args.size, args.seconds, args.concurrency)
                    print(
                        f"bundles of {n_docs:>2} document(s): server {server:7.1f} docs/s   "
                        f"driver {driver:7.1f} docs/s   server/driver {server / driver:.3f}   "
                        f"({sent} documents stored through ITI-65)"
                    )
            pending = await database.db["_transactions"].count_documents({})
            print(f"journal entries left: {pending}")
        await drop_disposable(database.client, settings.db)
        await database.close()
        key_file.unlink(missing_ok=True)


if __name__ == "__main__":
    asyncio.run(main())
