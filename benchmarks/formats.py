"""JSON and XML answers side by side: reads and searches, the same data, the same run.

    .venv/bin/python benchmarks/formats.py [--queries 300]

XML is produced from the outgoing JSON at the very edge, so the JSON path must not pay for it:
the JSON figures are shown with no ``Accept`` (default), with an explicit
``application/fhir+json``, and with the Java FHIR clients' header that lists XML first at equal
quality (which must still answer XML); the XML rate is shown beside them as a ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Stats, database_url, measure, running_app
from search import load


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--patients", type=int, default=100)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    with database_url() as (url, engine):
        async with running_app(url, open_access=True) as (app, database, client):
            await load(database.db, args.n, args.patients, app.state.settings.base_url)
            print(f"engine: {engine}; {args.n} DocumentReferences; in-process client, policy off")
            cases = {
                "read   JSON (no Accept)": ("/DocumentReference/d7", {}),
                "read   JSON (Accept fhir+json)": (
                    "/DocumentReference/d7",
                    {"Accept": "application/fhir+json"},
                ),
                "read   XML  (Accept fhir+xml)": (
                    "/DocumentReference/d7",
                    {"Accept": "application/fhir+xml"},
                ),
                "search JSON (20 entries)": ("/DocumentReference?patient=Patient/p3&_count=20", {}),
                "search XML  (20 entries)": (
                    "/DocumentReference?patient=Patient/p3&_count=20",
                    {"Accept": "application/fhir+xml;q=1.0, application/fhir+json;q=1.0"},
                ),
            }
            results: dict[str, Stats] = {}
            for label, (path, headers) in cases.items():

                async def call(_i: int, path: str = path, headers: dict[str, str] = headers) -> None:
                    r = await client.get(path, headers=headers)
                    assert r.status_code == 200, r.text

                results[label] = await measure(call, args.queries, warmup=10)
            base_read = results["read   JSON (no Accept)"]
            base_search = results["search JSON (20 entries)"]
            for label, stats in results.items():
                reference = base_read if label.startswith("read") else base_search
                print(stats.line(label) + f"  x{stats.pct(50) / reference.pct(50):.2f} of JSON p50")


if __name__ == "__main__":
    asyncio.run(main())
