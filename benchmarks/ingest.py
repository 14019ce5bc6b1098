"""Document ingest through ITI-65 (Provide Document Bundle) against raw driver inserts.

    .venv/bin/python benchmarks/ingest.py [--seconds 10] [--concurrency 8] [--size 50000]
                                          [--senders gp,establishment]

Documents of ~50 kB (PDF-like random content) are fed in transaction Bundles of 1 and of 10
documents, with the access policy, the audit trail and the journal that makes each Bundle
all-or-nothing, by two kinds of sender: a GP with their own token, for their patients
(``gp``); a hospital's information system authenticated as the establishment, the author
declared in each document as a contained PDSm PractitionerRole (RPPS), for a patient who
authorised the hospital (``establishment``: authentification indirecte, issue 16).
The reference is the raw driver writing the same data to the
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


#: The CHU's information system, for its cardiologist (IdNatPs), for pat-002 (who authorised
#: the CHU).
HOSPITAL = {
    "client_id": "dpi-chu-bellerive",
    "organization": "Organization/org-chu-bellerive",
    "scope": "system/*.cruds",
}
HOSPITAL_PATIENT = "Patient/pat-002"
CARDIOLOGIST_IDNATPS = "819999990047"
IDNPS = "urn:oid:1.2.250.1.71.4.2.1"


def bundle_of(n: int, size: int, seq: int) -> dict[str, Any]:
    docs = [SourceDocument(os.urandom(size), title=f"CR {seq}-{i}") for i in range(n)]
    return provide_bundle(PATIENTS[seq % len(PATIENTS)], AUTHOR, docs)


def hospital_bundle_of(n: int, size: int, seq: int) -> dict[str, Any]:
    """The same Bundle as a hospital system sends it: every author a contained PractitionerRole."""
    docs = [SourceDocument(os.urandom(size), title=f"CR {seq}-{i}") for i in range(n)]
    bundle = provide_bundle(HOSPITAL_PATIENT, "#author", docs)
    contained = [
        {
            "resourceType": "Practitioner",
            "id": "author-person",
            "identifier": [{"system": IDNPS, "value": CARDIOLOGIST_IDNATPS}],
        },
        {"resourceType": "PractitionerRole", "id": "author", "practitioner": {"reference": "#author-person"}},
    ]
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] in ("DocumentReference", "List"):
            entry["resource"]["contained"] = contained
    return bundle


def raw_documents(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """What the driver reference writes: the Bundle's resources, ids assigned, as documents."""
    out = []
    for entry in bundle["entry"]:
        resource = {**entry["resource"], "id": str(uuid.uuid4())}
        out.append({"_id": resource["id"], "resource": resource})
    return out


async def run(
    send: Any, n_docs: int, size: int, seconds: float, concurrency: int, make: Any = bundle_of
) -> tuple[float, int]:
    deadline = time.perf_counter() + seconds
    done = 0
    seq = 0

    async def worker() -> None:
        nonlocal done, seq
        while time.perf_counter() < deadline:
            seq += 1
            await send(make(n_docs, size, seq))
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
    parser.add_argument("--senders", default="gp,establishment", help="gp, establishment or both")
    args = parser.parse_args()
    senders = [s for s in args.senders.split(",") if s]
    with database_url() as (url, engine):
        key_file = Path(f"/tmp/dmp-bench-key-{uuid.uuid4().hex[:6]}.json")
        settings = dev_settings(url, key_file)
        database = Database(url, settings.db)
        app = create_app(settings, database)
        async with app.router.lifespan_context(app):
            await load_paths(Repository.internal(ResourceStore(database), settings, "bench"), [SAMPLES])
            print(
                f"engine: {engine}; ITI-65, {args.size} bytes per document; "
                f"{args.concurrency} concurrent senders, {args.seconds:.0f} s per figure"
            )
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=120) as client:

                async def via_driver(bundle: dict[str, Any]) -> None:
                    await database.db["raw_ingest"].insert_many(raw_documents(bundle))

                for sender in senders:
                    headers = bearer(settings, GP if sender == "gp" else HOSPITAL)
                    make = bundle_of if sender == "gp" else hospital_bundle_of

                    async def via_server(bundle: dict[str, Any], headers: dict[str, str] = headers) -> None:
                        response = await client.post("", json=bundle, headers=headers)
                        assert response.status_code == 200, response.text[:300]

                    for n_docs in (1, 10):
                        server, sent = await run(
                            via_server, n_docs, args.size, args.seconds, args.concurrency, make
                        )
                        driver, _ = await run(
                            via_driver, n_docs, args.size, args.seconds, args.concurrency, make
                        )
                        print(
                            f"{sender:>13}, bundles of {n_docs:>2} document(s): "
                            f"server {server:7.1f} docs/s   "
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
