"""The cost of the access policy on the typical MHD search, as ratios to no policy at all.

    .venv/bin/python benchmarks/policy.py [--n 20000] [--patients 1000] [--queries 200]

The same query ``DocumentReference?patient=X&status=current&type=…&date=ge…`` on the same data,
through the same app code, as: the patient's *médecin traitant* (sees all), a physician the
patient authorised by Consent (matrix + masking filters), a physiotherapist (a narrow matrix
rule), and with the policy switched off (``OpenAccess``, the reference).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BASE, Stats, bearer, database_url, dev_settings, measure
from search import TYPES, load, stored

from dmp_fhir.app import create_app
from dmp_fhir.policy.access import OpenAccess
from dmp_fhir.storage import Database
from dmp_fhir.storage.disposable import drop_disposable


def consent(pid: int) -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "id": f"c{pid}",
        "status": "active",
        "scope": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}
            ]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/p{pid}"},
        "provision": {
            "type": "permit",
            "actor": [
                {"reference": {"reference": "Practitioner/cardio"}},
                {"reference": {"reference": "Practitioner/kine"}},
            ],
        },
    }


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
        key_file = Path(f"/tmp/dmp-bench-key-{uuid.uuid4().hex[:6]}.json")
        settings = dev_settings(url, key_file)
        database = Database(url, settings.db)
        guarded = create_app(settings, database)
        open_app = create_app(settings, database, access=OpenAccess())
        async with guarded.router.lifespan_context(guarded), open_app.router.lifespan_context(open_app):
            print(
                f"engine: {engine} ({database.engine.name}); {n} DocumentReferences, "
                f"{args.patients} patients, 1 consent each"
            )
            await load(database.db, n, args.patients, settings.base_url)
            await database.db["Consent"].insert_many(
                [await stored("Consent", consent(p), settings.base_url) for p in range(args.patients)]
            )

            def token(claims: dict[str, Any]) -> dict[str, str]:
                return bearer(settings, {**claims, "scope": "user/*.cruds"})

            rng = random.Random(7)
            picks = [(rng.randrange(args.patients), rng.choice(TYPES)) for _ in range(args.queries + 3)]
            callers = {
                "no policy (reference)": (open_app, None),
                "médecin traitant": (guarded, "gp"),
                "physician authorised by consent": (guarded, "cardio"),
                "physiotherapist (narrow matrix)": (guarded, "kine"),
            }
            results: dict[str, Stats] = {}
            for label, (app, who) in callers.items():
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:

                    async def query(
                        i: int, who: str | None = who, client: httpx.AsyncClient = client
                    ) -> None:
                        p, code = picks[i]
                        headers: dict[str, str] = {}
                        if who == "gp":
                            headers = token(
                                {
                                    "fhirUser": f"Practitioner/gp{p % 20}",
                                    "profession": "10",
                                    "specialty": "SM54",
                                }
                            )
                        elif who == "cardio":
                            headers = token(
                                {"fhirUser": "Practitioner/cardio", "profession": "10", "specialty": "SM04"}
                            )
                        elif who == "kine":
                            headers = token({"fhirUser": "Practitioner/kine", "profession": "70"})
                        r = await client.get(
                            "/DocumentReference",
                            headers=headers,
                            params={
                                "patient": f"Patient/p{p}",
                                "status": "current",
                                "type": f"http://loinc.org|{code}",
                                "date": "ge2021-01-01",
                            },
                        )
                        assert r.status_code == 200, r.text

                    results[label] = await measure(query, args.queries)
            reference = results["no policy (reference)"]
            for label, stats in results.items():
                print(stats.line(label))
                print(
                    f"{'':<44} ratio to no policy p50 {stats.pct(50) / reference.pct(50):.2f}x  "
                    f"p95 {stats.pct(95) / reference.pct(95):.2f}x"
                )
        await drop_disposable(database.client, settings.db)
        await database.close()
        key_file.unlink(missing_ok=True)


if __name__ == "__main__":
    asyncio.run(main())
