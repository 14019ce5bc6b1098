"""The cost of the access policy on the typical MHD search, as ratios to no policy at all.

    .venv/bin/python benchmarks/policy.py [--n 20000] [--patients 1000] [--queries 200]

The same query ``DocumentReference?patient=X&status=current&type=…&date=ge…`` on the same data,
through the same app code, as: the patient's *médecin traitant* (sees all), a physician the
patient authorised by Consent (matrix + masking filters), a physiotherapist (a narrow matrix
rule), and with the policy switched off (``OpenAccess``, the reference).
"""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BASE, Stats, bearer, database_url, guarded_and_open, measure, scale_arguments
from search import TYPES, load, stored


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
    args = scale_arguments(__doc__)
    n = args.n
    with database_url() as (url, engine):
        async with guarded_and_open(url) as (settings, database, guarded, open_app):
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


if __name__ == "__main__":
    asyncio.run(main())
