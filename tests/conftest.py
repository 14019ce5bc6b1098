"""Test set-up: a real MongoDB-compatible server over TCP, never an imitation.

``MONGODB_URL`` names one (e.g. MongoDB 7); otherwise an embedded FerretDB is built and
started for the session (``dmp_fhir.devdb``). Each test module gets a fresh database.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from pymongo import MongoClient

from dmp_fhir.app import create_app
from dmp_fhir.config import Settings
from dmp_fhir.policy.access import OpenAccess
from dmp_fhir.storage import Database
from dmp_fhir.storage.disposable import disposable_name, drop_disposable

from .keycloak_server import EARLY, Keycloak, running_keycloak

BASE = "http://testserver/fhir"


@pytest.fixture(scope="session")
def mongodb_url() -> Iterator[str]:
    url = os.environ.get("MONGODB_URL")
    if url:
        refuse_server_in_use(url)
        yield url
        return
    from dmp_fhir.devdb import EmbeddedDatabase

    with EmbeddedDatabase() as db:
        yield db.url


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Start Keycloak in the background now if a selected test needs it (see EarlyStart)."""
    if any("keycloak" in getattr(item, "fixturenames", ()) for item in items):
        EARLY.begin()


def pytest_sessionfinish() -> None:
    EARLY.stop()  # when no test took it (a -x stop before them), or the fixture failed


@pytest.fixture(scope="session")
def keycloak() -> Iterator[Keycloak]:
    """A real Keycloak with the compose realm (``tests/keycloak_server.py``), started once."""
    with running_keycloak() as server:
        yield server


def refuse_server_in_use(url: str) -> None:
    """Stop the run before touching a server that holds a production-named database.

    Tests only ever drop the ``test_…`` databases they create, but a server that holds the
    real record store is no place for them unless its owner says it is disposable.
    """
    if os.environ.get("DMP_FHIR_TESTS_MAY_USE_SERVER") == "1":
        return
    production = Settings().db
    with MongoClient(url, serverSelectionTimeoutMS=10_000) as client:
        names = client.list_database_names()
    if production in names:
        pytest.exit(
            f"MONGODB_URL holds a database named {production!r} (DMP_FHIR_DB): refusing to run the "
            "tests against a server in use. Set DMP_FHIR_TESTS_MAY_USE_SERVER=1 if it is disposable.",
            returncode=2,
        )


def make_settings(mongodb_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "mongodb_url": mongodb_url,
        "db": disposable_name("test"),
        "base_url": BASE,
    }
    values.update(overrides)
    return Settings.model_validate(values)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def app(mongodb_url: str) -> AsyncIterator[FastAPI]:
    """The app with ``OpenAccess``: for the REST mechanics (CRUD, search, formats), which
    the policy tests then exercise again with real tokens. The search catalogue exercises every
    parameter on its own, so the ITI-67 rule (patient and status required) is off here; the
    MHD tests run with it on. Its hand-made search population (patients without INS, documents
    about a Group…) is generic FHIR, so the DMP profiles only apply there when ``meta.profile``
    names them; everything else runs in production mode."""
    async with open_access_app(
        mongodb_url, require_iti67_parameters=False, profile_enforcement="declared"
    ) as application:
        yield application


@contextlib.asynccontextmanager
async def open_access_app(mongodb_url: str, **overrides: object) -> AsyncIterator[FastAPI]:
    """An ``OpenAccess`` app on a fresh database, dropped afterwards."""
    settings = make_settings(mongodb_url, **overrides)
    database = Database(mongodb_url, settings.db)
    application = create_app(settings, database, access=OpenAccess())
    async with application.router.lifespan_context(application):
        yield application
    await drop_disposable(database.client, settings.db)
    await database.close()


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
        yield http


def new_id() -> str:
    return uuid.uuid4().hex[:16]
