"""Shared benchmark plumbing: a database (MONGODB_URL or an embedded FerretDB), an in-process
app, latency statistics. Benchmarks print figures; they never assert."""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from dmp_fhir.app import create_app
from dmp_fhir.auth.signing import load_or_create_dev_key, mint_token
from dmp_fhir.config import Settings
from dmp_fhir.policy.access import OpenAccess
from dmp_fhir.storage import Database
from dmp_fhir.storage.disposable import disposable_name, drop_disposable

BASE = "http://bench/fhir"


@contextlib.contextmanager
def database_url() -> Iterator[tuple[str, str]]:
    """(url, description) of the engine the benchmark runs on."""
    url = os.environ.get("MONGODB_URL")
    if url:
        yield url, f"MONGODB_URL={url}"
        return
    from dmp_fhir.devdb import EmbeddedDatabase

    with EmbeddedDatabase() as db:
        yield db.url, f"embedded FerretDB ({db.backend} backend)"


def dev_settings(url: str, key_file: Path) -> Settings:
    """Settings of a throwaway benchmark database, accepting development tokens."""
    return Settings.model_validate(
        {
            "mongodb_url": url,
            "db": disposable_name("bench"),
            "base_url": BASE,
            "dev_mode": True,
            "dev_key_file": key_file,
        }
    )


def bearer(settings: Settings, claims: dict[str, Any]) -> dict[str, str]:
    """An Authorization header with a development token for ``claims``."""
    key = load_or_create_dev_key(settings.dev_key_file)
    jwt = mint_token(claims, key=key, issuer=settings.issuer, audience=settings.token_audience)
    return {"Authorization": f"Bearer {jwt}"}


@contextlib.asynccontextmanager
async def running_app(
    url: str, *, open_access: bool = False, **overrides: object
) -> AsyncIterator[tuple[FastAPI, Database, httpx.AsyncClient]]:
    """The app in-process; ``open_access`` switches the policy off (the reference figure)."""
    settings = Settings.model_validate(
        {"mongodb_url": url, "db": disposable_name("bench"), "base_url": BASE, **overrides}
    )
    database = Database(url, settings.db)
    app = create_app(settings, database, access=OpenAccess() if open_access else None)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            yield app, database, client
    await drop_disposable(database.client, settings.db)
    await database.close()


@contextlib.asynccontextmanager
async def guarded_and_open(url: str) -> AsyncIterator[tuple[Settings, Database, FastAPI, FastAPI]]:
    """Two apps on one throwaway database: the DMP policy, and no policy (the reference)."""
    key_file = Path(f"/tmp/dmp-bench-key-{uuid.uuid4().hex[:6]}.json")
    settings = dev_settings(url, key_file)
    database = Database(url, settings.db)
    guarded = create_app(settings, database)
    open_app = create_app(settings, database, access=OpenAccess())
    try:
        async with guarded.router.lifespan_context(guarded), open_app.router.lifespan_context(open_app):
            yield settings, database, guarded, open_app
    finally:
        await drop_disposable(database.client, settings.db)
        await database.close()
        key_file.unlink(missing_ok=True)


def scale_arguments(description: str | None) -> argparse.Namespace:
    """``--n`` (default: 100 k on MONGODB_URL, 20 k embedded), ``--patients``, ``--queries``."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    args.n = args.n or (100_000 if os.environ.get("MONGODB_URL") else 20_000)
    return args


@dataclass
class Stats:
    samples: list[float]

    def pct(self, p: float) -> float:
        ordered = sorted(self.samples)
        index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
        return ordered[index] * 1000

    @property
    def mean(self) -> float:
        return statistics.fmean(self.samples) * 1000

    def line(self, label: str) -> str:
        return (
            f"{label:<44} p50 {self.pct(50):8.2f} ms  p95 {self.pct(95):8.2f} ms  "
            f"p99 {self.pct(99):8.2f} ms  (n={len(self.samples)})"
        )


async def measure(fn: Callable[[int], Awaitable[object]], n: int, warmup: int = 3) -> Stats:
    for i in range(warmup):
        await fn(i)
    samples: list[float] = []
    for i in range(n):
        start = time.perf_counter()
        await fn(i)
        samples.append(time.perf_counter() - start)
    return Stats(samples)
