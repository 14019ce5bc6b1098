"""Search latency: the server (HTTP, in-process) against the raw driver on the same data.

    .venv/bin/python benchmarks/search.py [--n 20000] [--patients 1000] [--queries 200]

Loads N DocumentReferences for the given number of patients (stored exactly as the server
stores them), then times the typical MHD query
``DocumentReference?patient=X&status=current&type=…&date=ge…`` and ``Patient?identifier=…``
through the app and through PyMongo with a hand-written filter of the same meaning.
Default N: 100 000 on MongoDB, 20 000 on the embedded FerretDB (every query is a scan there).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Stats, database_url, measure, running_app

from dmp_fhir.policy.fields import policy_fields
from dmp_fhir.policy.matrix import load_matrix
from dmp_fhir.search.extract import extract_search_fields
from dmp_fhir.storage.packing import pack
from dmp_fhir.storage.store import format_instant

INS = "urn:oid:1.2.250.1.213.1.4.8"
VISIBILITY = (
    "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument"
)
TYPES = ["11488-4", "34133-9", "11502-2", "18748-4", "57833-6", "60591-5"]


def patient(i: int) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": f"p{i}",
        "identifier": [{"system": INS, "value": f"{1800000000000 + i}"}],
        "name": [{"family": f"Famille{i}", "given": ["Jeanne"]}],
        "gender": "female",
        "birthDate": "1970-01-01",
        "generalPractitioner": [{"reference": f"Practitioner/gp{i % 20}"}],
    }


def document(i: int, patients: int, rng: random.Random) -> dict[str, Any]:
    day = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(days=rng.randrange(5 * 365))
    code = rng.choice(TYPES)
    return {
        "resourceType": "DocumentReference",
        "id": f"d{i}",
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:oid:1.2.250.1.999.{i}"},
        "status": "current" if rng.random() < 0.9 else "superseded",
        "type": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "category": [
            {
                "coding": [
                    {
                        "system": "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument",
                        "code": "10",
                    }
                ]
            }
        ],
        "subject": {"reference": f"Patient/p{i % patients}"},
        "date": day.isoformat(),
        "author": [{"reference": f"Practitioner/pr{i % 50}"}],
        "securityLabel": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}]}
        ]
        + ([{"coding": [{"system": VISIBILITY, "code": "MASQUE_PS"}]}] if rng.random() < 0.05 else []),
        "content": [
            {
                "attachment": {
                    "contentType": "application/pdf",
                    "url": f"Binary/b{i}",
                    "size": 51200,
                    "hash": "2jmj7l5rSw0yVb/vlWAYkK/YBwk=",
                    "title": "Compte rendu",
                }
            }
        ],
        "context": {"period": {"start": day.isoformat()}},
    }


async def _no_resolve(_reference: str) -> dict[str, Any] | None:
    return None


async def stored(rtype: str, resource: dict[str, Any], base: str) -> dict[str, Any]:
    """The document exactly as the server stores it (search and policy fields included)."""
    moment = datetime.now(UTC).replace(microsecond=0)
    resource = {**resource, "meta": {"versionId": "1", "lastUpdated": format_instant(moment)}}
    return pack(
        {
            "_id": resource["id"],
            "_rid": resource["id"],
            "_v": 1,
            "_lu": moment,
            "_deleted": False,
            "resource": resource,
            **extract_search_fields(rtype, resource, base_url=base),
            **await policy_fields(rtype, resource, load_matrix(), _no_resolve),
        }
    )


async def load(
    db: Any,
    n: int,
    patients: int,
    base: str,
    rtype: str = "DocumentReference",
    make: Callable[[int, int, random.Random], dict[str, Any]] = document,
) -> None:
    """``patients`` Patients, then ``n`` resources of ``rtype`` spread over them, written as the
    server stores them (search and policy fields, the resource packed) in batches of 1,000."""
    rng = random.Random(42)
    await db["Patient"].insert_many([await stored("Patient", patient(i), base) for i in range(patients)])
    batch: list[dict[str, Any]] = []
    for i in range(n):
        batch.append(await stored(rtype, make(i, patients, rng), base))
        if len(batch) == 1000:
            await db[rtype].insert_many(batch)
            batch = []
    if batch:
        await db[rtype].insert_many(batch)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    with database_url() as (url, engine):
        n = args.n or (100_000 if os.environ.get("MONGODB_URL") else 20_000)
        async with running_app(url, open_access=True) as (app, database, client):
            print(
                f"engine: {engine} ({database.engine.name}); {n} DocumentReferences, {args.patients} patients"
            )
            started = asyncio.get_running_loop().time()
            await load(database.db, n, args.patients, app.state.settings.base_url)
            print(f"loaded in {asyncio.get_running_loop().time() - started:.1f} s")
            rng = random.Random(7)
            picks = [(rng.randrange(args.patients), rng.choice(TYPES)) for _ in range(args.queries + 3)]
            coll = database.db["DocumentReference"]

            async def mhd_http(i: int) -> None:
                p, code = picks[i]
                r = await client.get(
                    "/DocumentReference",
                    params={
                        "patient": f"Patient/p{p}",
                        "status": "current",
                        "type": f"http://loinc.org|{code}",
                        "date": "ge2021-01-01",
                    },
                )
                assert r.status_code == 200, r.text

            async def mhd_driver(i: int) -> None:
                p, code = picks[i]
                await (
                    coll.find(
                        {
                            "_s_patient": f"Patient/p{p}",
                            "_s_status": "current",
                            "_s_type": f"http://loinc.org|{code}",
                            "_deleted": False,
                            "_s_date_hi": {"$gte": datetime(2021, 1, 1, tzinfo=UTC)},
                        }
                    )
                    .sort([("_lu", -1), ("_id", -1)])
                    .limit(21)
                    .to_list(None)
                )

            async def ins_http(i: int) -> None:
                r = await client.get(
                    "/Patient", params={"identifier": f"{INS}|{1800000000000 + picks[i][0]}"}
                )
                assert r.status_code == 200 and r.json()["entry"], r.text

            async def ins_driver(i: int) -> None:
                await (
                    database.db["Patient"]
                    .find(
                        {
                            "_s_identifier": f"{INS}|{1800000000000 + picks[i][0]}",
                            "_deleted": False,
                        }
                    )
                    .sort([("_lu", -1), ("_id", -1)])
                    .limit(21)
                    .to_list(None)
                )

            rows: list[tuple[str, Stats, Stats]] = []
            for label, server, driver in (
                ("DocumentReference?patient&status&type&date", mhd_http, mhd_driver),
                ("Patient?identifier=INS", ins_http, ins_driver),
            ):
                s = await measure(server, args.queries)
                d = await measure(driver, args.queries)
                rows.append((label, s, d))
            for label, s, d in rows:
                print(s.line(f"server  {label}"))
                print(d.line(f"driver  {label}"))
                print(
                    f"{'':<44} ratio server/driver p50 {s.pct(50) / d.pct(50):.2f}x  "
                    f"p95 {s.pct(95) / d.pct(95):.2f}x"
                )
            if database.engine.is_mongodb:
                plan = await database.db.command(
                    "explain",
                    {
                        "find": "DocumentReference",
                        "filter": {"_s_patient": "Patient/p1", "_s_status": "current"},
                    },
                )
                print("winning plan:", plan["queryPlanner"]["winningPlan"])


if __name__ == "__main__":
    asyncio.run(main())
