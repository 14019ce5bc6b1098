"""What auditing costs: read and search throughput with the trail on and off, as a ratio.

    .venv/bin/python benchmarks/audit.py [--seconds 10] [--concurrency 16]

Same data, same app code, same token (a GP reading their patients' documents); "off" builds
the app with ``auditing=False`` (a ``NullAuditor``), "on" is the production trail: every
answer waits until its AuditEvent is chained and stored (group commit).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BASE, bearer, database_url, dev_settings
from search import load

from dmp_fhir.app import create_app
from dmp_fhir.storage import Database
from dmp_fhir.storage.disposable import drop_disposable


async def throughput(
    client: httpx.AsyncClient,
    kind: str,
    headers: dict[str, str],
    patients: int,
    docs: int,
    seconds: float,
    concurrency: int,
) -> float:
    deadline = time.perf_counter() + seconds
    done = 0

    async def worker(seed: int) -> None:
        nonlocal done
        rng = random.Random(seed)
        while time.perf_counter() < deadline:
            if kind == "read":
                i = rng.randrange(docs)
                r = await client.get(f"/DocumentReference/d{i}", headers=headers)
            else:
                r = await client.get(
                    "/DocumentReference",
                    headers=headers,
                    params={"patient": f"Patient/p{rng.randrange(patients)}", "status": "current"},
                )
            assert r.status_code in (200, 403, 404), r.text
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(s) for s in range(concurrency)))
    return done / (time.perf_counter() - started)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with database_url() as (url, engine):
        key_file = Path(f"/tmp/dmp-bench-key-{uuid.uuid4().hex[:6]}.json")
        settings = dev_settings(url, key_file)
        database = Database(url, settings.db)
        apps = {"off": create_app(settings, database, auditing=False), "on": create_app(settings, database)}
        async with (
            apps["off"].router.lifespan_context(apps["off"]),
            apps["on"].router.lifespan_context(apps["on"]),
        ):
            await load(database.db, args.n, args.patients, settings.base_url)
            print(
                f"engine: {engine}; {args.n} DocumentReferences, {args.patients} patients; "
                f"{args.concurrency} concurrent clients, {args.seconds:.0f} s per figure"
            )
            # gp0 is the médecin traitant of every 20th patient: reads of others answer 403
            # (a refusal is audited too); what matters is the same mix on and off.
            claims: dict[str, Any] = {
                "fhirUser": "Practitioner/gp0",
                "profession": "10",
                "specialty": "SM54",
                "scope": "user/*.cruds",
            }
            headers = bearer(settings, claims)
            for kind in ("read", "search"):
                rates: dict[str, list[float]] = {}
                for mode in ("off", "on", "off", "on"):  # interleaved: drift hits both
                    transport = httpx.ASGITransport(app=apps[mode])
                    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
                        rate = await throughput(
                            client, kind, headers, args.patients, args.n, args.seconds / 2, args.concurrency
                        )
                    rates.setdefault(mode, []).append(rate)
                off = sum(rates["off"]) / 2
                on = sum(rates["on"]) / 2
                print(
                    f"{kind:<7} auditing off {off:8.1f} req/s   on {on:8.1f} req/s   "
                    f"on/off {on / off:.3f}  (cost {100 * (1 - on / off):.1f} %)"
                )
            events = await database.db["AuditEvent"].count_documents({})
            print(f"audit events written: {events}")
        await drop_disposable(database.client, settings.db)
        await database.close()
        key_file.unlink(missing_ok=True)


if __name__ == "__main__":
    asyncio.run(main())
