"""A real uvicorn server on a free loopback port, for clients that speak real HTTP (fhirpy,
fhirclient, schemathesis): the app runs in its own thread and event loop."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from pymongo import MongoClient

from dmp_fhir.app import create_app
from dmp_fhir.auth.signing import load_or_create_dev_key, mint_token
from dmp_fhir.config import Settings
from dmp_fhir.storage.disposable import disposable_name, drop_disposable_sync


@dataclass
class LiveServer:
    base_url: str
    settings: Settings

    def token(self, claims: dict[str, Any]) -> str:
        key = load_or_create_dev_key(self.settings.dev_key_file)
        return mint_token(claims, key=key, issuer=self.settings.issuer, audience=self.settings.token_audience)

    def system_token(self) -> str:
        """A system client with every scope (for clients that create their own test data)."""
        return self.token({"client_id": "interop-tests", "scope": "system/*.cruds"})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def live_server(mongodb_url: str, tmp: Path, **overrides: Any) -> Iterator[LiveServer]:
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    values: dict[str, Any] = {
        "mongodb_url": mongodb_url,
        "db": disposable_name("test"),
        "base_url": base,
        "dev_mode": True,
        "dev_key_file": tmp / "dev-key.json",
    }
    values.update(overrides)
    settings = Settings.model_validate(values)
    try:
        with serving(create_app(settings), port, "the test server", lifespan="on"):
            yield LiveServer(base, settings)
    finally:
        with MongoClient(mongodb_url) as client:
            drop_disposable_sync(client, settings.db)


@contextmanager
def serving(app: Any, port: int, what: str, **config: Any) -> Iterator[None]:
    """``app`` served by uvicorn on a loopback ``port`` in a thread of its own, until the block
    ends (``what`` names it when it does not start)."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, **config)
    )
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=30)
