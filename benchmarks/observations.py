"""Observation search (issue 18): the server against the raw driver on the same data.

    .venv/bin/python benchmarks/observations.py [--n 20000] [--patients 1000] [--queries 200]

Loads N laboratory Observations (an NFS/ionogramme panel per visit: 10 LOINC codes with UCUM
values) for the given number of patients, stored exactly as the server stores them, then times
``Observation?patient=X&code=http://loinc.org|<code>`` and
``Observation?patient=X&value-quantity=gt5.1|http://unitsofmeasure.org|mmol/L`` through the app
without the policy, through the app as the patient's médecin traitant (policy on, audited), and
through PyMongo with a hand-written filter of the same meaning. Default N: 100 000 on MongoDB,
20 000 on the embedded FerretDB (every query is a scan there).
"""

from __future__ import annotations

import asyncio
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BASE, Stats, bearer, database_url, guarded_and_open, measure, scale_arguments
from search import load

UCUM = "http://unitsofmeasure.org"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
#: (LOINC, unit, typical value, spread)
PANEL = [
    ("6690-2", "10*9/L", 7.0, 2.0),
    ("789-8", "10*12/L", 4.6, 0.4),
    ("718-7", "g/dL", 14.0, 1.5),
    ("4544-3", "%", 42.0, 4.0),
    ("777-3", "10*9/L", 250.0, 60.0),
    ("2951-2", "mmol/L", 140.0, 3.0),
    ("2823-3", "mmol/L", 4.3, 0.5),
    ("2075-0", "mmol/L", 102.0, 3.0),
    ("2028-9", "mmol/L", 26.0, 2.0),
    ("14682-9", "umol/L", 80.0, 15.0),
]


def observation(i: int, patients: int, rng: random.Random) -> dict[str, Any]:
    visit, slot = divmod(i, len(PANEL))
    code, unit, typical, spread = PANEL[slot]
    day = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(days=(visit * 37) % (5 * 365))
    return {
        "resourceType": "Observation",
        "id": f"o{i}",
        "identifier": [{"system": "urn:oid:1.2.250.1.999.2002.1", "value": f"o{i}"}],
        "status": "final",
        "category": [{"coding": [{"system": OBS_CATEGORY, "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/p{visit % patients}"},
        "effectiveDateTime": day.isoformat(),
        "performer": [{"reference": f"Practitioner/bio{visit % 10}"}],
        "valueQuantity": {"value": round(rng.gauss(typical, spread), 2), "unit": unit, "system": UCUM,
                          "code": unit},
        "referenceRange": [{"low": {"value": typical - spread, "unit": unit},
                            "high": {"value": typical + spread, "unit": unit}}],
    }  # fmt: skip


async def main() -> None:
    args = scale_arguments(__doc__)
    n = args.n
    with database_url() as (url, engine):
        async with guarded_and_open(url) as (settings, database, guarded, open_app):
            print(f"engine: {engine} ({database.engine.name}); {n} Observations, {args.patients} patients")
            started = asyncio.get_running_loop().time()
            await load(database.db, n, args.patients, settings.base_url, "Observation", observation)
            print(f"loaded in {asyncio.get_running_loop().time() - started:.1f} s")
            rng = random.Random(7)
            picks = [(rng.randrange(args.patients), rng.choice(PANEL)[0]) for _ in range(args.queries + 3)]
            coll = database.db["Observation"]

            def gp(p: int) -> dict[str, str]:  # the samples' Patient(i) names gp{i % 20} as GP
                claims = {"fhirUser": f"Practitioner/gp{p % 20}", "profession": "10", "specialty": "SM54"}
                return bearer(settings, {**claims, "scope": "user/*.cruds"})

            shapes: dict[str, tuple[Any, Any]] = {
                "Observation?patient&code": (
                    lambda p, code: {"patient": f"Patient/p{p}", "code": f"http://loinc.org|{code}"},
                    lambda p, code: {"_s_patient": f"Patient/p{p}", "_s_code": f"http://loinc.org|{code}"},
                ),
                "Observation?patient&value-quantity": (
                    lambda p, code: {"patient": f"Patient/p{p}", "value-quantity": f"gt5.1|{UCUM}|mmol/L"},
                    lambda p, code: {  # mmol/L is searched in its canonical unit (search/ucum.py)
                        "_s_patient": f"Patient/p{p}",
                        "_s_value_quantity_canon": {"$gt": 5.1},
                        "_s_value_quantity_canon_unit": "mmol/L",
                    },
                ),
            }
            for label, (http_params, raw_filter) in shapes.items():
                results: dict[str, Stats] = {}
                for who, app in (("server, no policy", open_app), ("server, as the GP", guarded)):
                    transport = httpx.ASGITransport(app=app)
                    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:

                        async def query(
                            i: int,
                            client: httpx.AsyncClient = client,
                            who: str = who,
                            params: Any = http_params,
                        ) -> None:
                            p, code = picks[i]
                            headers = gp(p) if who.endswith("GP") else {}
                            r = await client.get("/Observation", headers=headers, params=params(p, code))
                            assert r.status_code == 200 and r.json().get("entry"), r.text

                        results[who] = await measure(query, args.queries)

                async def driver(i: int, shape: Any = raw_filter) -> None:
                    p, code = picks[i]
                    found = await (
                        coll.find({**shape(p, code), "_deleted": False})
                        .sort([("_lu", -1), ("_id", -1)])
                        .limit(21)
                        .to_list(None)
                    )
                    assert found

                results["driver"] = await measure(driver, args.queries)
                reference = results["driver"]
                for who, stats in results.items():
                    print(stats.line(f"{who:<18} {label}"))
                    if who != "driver":
                        print(
                            f"{'':<44} ratio to the driver p50 {stats.pct(50) / reference.pct(50):.2f}x  "
                            f"p95 {stats.pct(95) / reference.pct(95):.2f}x"
                        )
                if database.engine.is_mongodb:
                    explained = {"find": "Observation", "filter": raw_filter(1, "2823-3")}
                    plan = await database.db.command("explain", explained)
                    print("winning plan:", plan["queryPlanner"]["winningPlan"])


if __name__ == "__main__":
    asyncio.run(main())
