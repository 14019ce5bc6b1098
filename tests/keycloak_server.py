"""A real Keycloak for the token tests: Maven Central's ``org.keycloak:keycloak-quarkus-dist``,
started once per test session with the realm ``docker-compose.yml`` imports
(``deploy/keycloak/dmp-realm.json``, realm ``dmp``).

The distribution is fetched by Maven's own client (``mvn dependency:copy``) into ``.cache/keycloak``
the first time (~165 MB, ~1 min) and unpacked there; ``kc.sh start-dev --import-realm`` then
runs on a free port with an in-memory H2 database (``--db dev-mem``: nothing to clean up). The
first start on a fresh unpack builds Keycloak's optimised image (about a minute on two cores),
later ones take ~20 s. Needs Java 17+ and ``mvn``; without them the tests are skipped, except
under CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

VERSION = "26.5.6"
ROOT = Path(__file__).resolve().parents[1]
REALM_FILE = ROOT / "deploy" / "keycloak" / "dmp-realm.json"
REALM = "dmp"
CACHE = ROOT / ".cache" / "keycloak"
ADMIN = ("admin", "admin-for-tests-only")
START_TIMEOUT_S = 300
#: The audience the realm's ``dmp-fhir-audience`` scope puts in every token (compose's base URL).
AUDIENCE = "http://127.0.0.1:8080/fhir"
#: Demo clients and users of the realm (the same as the README's compose walk-through).
PRO_CLIENT = ("dmp-pro-app", "dmp-pro-app-secret")
PATIENT_CLIENT = "dmp-patient-app"
SYSTEM_CLIENT = ("dmp-system-chu", "dmp-system-chu-secret")
OTHER_CLIENT = ("other-service", "other-service-secret")
PASSWORD = "demo"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"Keycloak integration tests cannot run: {reason}")
    pytest.skip(f"Keycloak integration tests skipped: {reason}")


def ensure_distribution() -> Path:
    """Keycloak's home folder under ``.cache/keycloak``, fetched and unpacked when missing."""
    home = CACHE / f"keycloak-{VERSION}"
    if (home / "bin" / "kc.sh").exists():
        return home
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            _unavailable(f"'{tool}' is not installed")
    CACHE.mkdir(parents=True, exist_ok=True)
    tarball = CACHE / f"keycloak-quarkus-dist-{VERSION}.tar.gz"
    if not tarball.exists():
        repo = CACHE / "m2"
        fetched = subprocess.run(
            ["mvn", "-q", "-B", "dependency:copy",
             f"-Dartifact=org.keycloak:keycloak-quarkus-dist:{VERSION}:tar.gz",
             f"-DoutputDirectory={CACHE}", f"-Dmaven.repo.local={repo}"],
            capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        shutil.rmtree(repo / "org" / "keycloak", ignore_errors=True)  # a second 165 MB copy
        if fetched.returncode != 0 or not tarball.exists():
            pytest.fail(f"mvn could not fetch keycloak-quarkus-dist {VERSION}:\n{fetched.stdout[-3000:]}")
    unpack = Path(tempfile.mkdtemp(prefix="unpack-", dir=CACHE))
    with tarfile.open(tarball) as archive:
        archive.extractall(unpack, filter="tar")
    with contextlib.suppress(OSError):  # another session may have unpacked it meanwhile
        (unpack / f"keycloak-{VERSION}").rename(home)
    shutil.rmtree(unpack, ignore_errors=True)
    return home


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Keycloak:
    """A running Keycloak with the ``dmp`` realm; endpoints and a few token helpers."""

    base: str
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    _http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    @property
    def issuer(self) -> str:
        return f"{self.base}/realms/{REALM}"

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/certs"

    @property
    def token_url(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/token"

    @property
    def authorize_url(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/auth"

    # -- tokens ------------------------------------------------------------------------------
    def _token(self, form: dict[str, str]) -> dict[str, Any]:
        answer = self._http.post(self.token_url, data=form)
        assert answer.status_code == 200, f"{form.get('grant_type')}: {answer.status_code} {answer.text}"
        body: dict[str, Any] = answer.json()
        return body

    def password_grant(
        self, username: str, *, client: str | tuple[str, str] = PRO_CLIENT, scope: str | None = None
    ) -> dict[str, Any]:
        """A user's token response (``access_token``, ``refresh_token``...), password grant."""
        form = {"grant_type": "password", "username": username, "password": PASSWORD, **_client(client)}
        if scope:
            form["scope"] = scope
        return self._token(form)

    def client_credentials(self, client: tuple[str, str] = SYSTEM_CLIENT) -> dict[str, Any]:
        """A backend service's token response (client credentials grant)."""
        return self._token({"grant_type": "client_credentials", **_client(client)})

    def refresh(self, refresh_token: str, *, client: str | tuple[str, str] = PRO_CLIENT) -> dict[str, Any]:
        return self._token({"grant_type": "refresh_token", "refresh_token": refresh_token, **_client(client)})

    def access_token(self, username: str, **kw: Any) -> str:
        return str(self.password_grant(username, **kw)["access_token"])

    # -- administration ----------------------------------------------------------------------
    def admin(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """A call to the admin REST API (``/admin/realms/dmp`` + path) as the bootstrap admin."""
        token = self._http.post(
            f"{self.base}/realms/master/protocol/openid-connect/token",
            data={
                "grant_type": "password",
                "client_id": "admin-cli",
                "username": ADMIN[0],
                "password": ADMIN[1],
            },
        ).json()["access_token"]
        url = f"{self.base}/admin/realms/{REALM}{path}"
        return self._http.request(method, url, headers={"Authorization": f"Bearer {token}"}, **kw)

    def add_signing_key(self, name: str, priority: int = 500) -> str:
        """Rotate: a new RS256 key, with a higher priority than the realm's (new tokens use it);
        the old key stays published. Returns the new key's ``kid``."""
        realm_id = self.admin("GET", "").json()["id"]
        component = {
            "name": name, "providerId": "rsa-generated", "providerType": "org.keycloak.keys.KeyProvider",
            "parentId": realm_id,
            "config": {"priority": [str(priority)], "keySize": ["2048"], "active": ["true"],
                       "enabled": ["true"], "algorithm": ["RS256"]},
        }  # fmt: skip
        created = self.admin("POST", "/components", json=component)
        assert created.status_code == 201, created.text
        keys = self.admin("GET", "/keys").json()["keys"]
        mine = [k for k in keys if k.get("providerPriority") == priority and k.get("algorithm") == "RS256"]
        assert mine, keys
        return str(mine[0]["kid"])

    def stop(self) -> None:
        self._http.close()
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def _client(client: str | tuple[str, str]) -> dict[str, str]:
    if isinstance(client, str):
        return {"client_id": client}
    return {"client_id": client[0], "client_secret": client[1]}


def launch() -> Keycloak:
    """Fetch if needed, then start Keycloak (``start-dev --import-realm``) on a free port;
    returns at once (``wait_ready`` waits)."""
    home = ensure_distribution()
    imports = home / "data" / "import"
    imports.mkdir(parents=True, exist_ok=True)
    for old in imports.glob("*.json"):
        old.unlink()
    shutil.copyfile(REALM_FILE, imports / REALM_FILE.name)
    port = _free_port()
    handle, name = tempfile.mkstemp(prefix="keycloak-", suffix=".log")
    os.close(handle)
    log = Path(name)
    env = {
        **os.environ,
        "KC_BOOTSTRAP_ADMIN_USERNAME": ADMIN[0],
        "KC_BOOTSTRAP_ADMIN_PASSWORD": ADMIN[1],
        "JAVA_OPTS_KC_HEAP": "-Xms64m -Xmx512m",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(home / "bin" / "kc.sh"), "start-dev", "--import-realm", "--db=dev-mem",
             f"--http-port={port}", "--http-host=127.0.0.1",
             "--hostname-strict=false", "--log-level=warn,org.keycloak.services:info"],
            cwd=home, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    return Keycloak(base=f"http://127.0.0.1:{port}", process=process, log=log)


def wait_ready(server: Keycloak) -> None:
    assert server.process is not None and server.log is not None
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if server.process.poll() is not None:
            pytest.fail(
                f"Keycloak exited with {server.process.returncode}:\n{server.log.read_text()[-4000:]}"
            )
        with contextlib.suppress(httpx.HTTPError):
            discovery = httpx.get(f"{server.issuer}/.well-known/openid-configuration", timeout=2)
            if discovery.status_code == 200:
                return
        if time.monotonic() > deadline:
            pytest.fail(f"Keycloak not ready within {START_TIMEOUT_S} s:\n{server.log.read_text()[-4000:]}")
        time.sleep(0.5)


class EarlyStart:
    """Keycloak takes a minute or two to start on a small machine: the suite launches it in a
    background thread as soon as it knows a test needs it (``conftest.pytest_collection_
    modifyitems``), so that the start overlaps the tests that run before."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._server: Keycloak | None = None
        self._error: BaseException | None = None

    def begin(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="keycloak-launch", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            self._server = launch()
        except BaseException as exc:  # pytest.skip/fail too: re-raised in the fixture
            self._error = exc

    def take(self) -> Keycloak:
        self.begin()
        assert self._thread is not None
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._server is not None
        return self._server

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.join()
        if self._server is not None:
            self._server.stop()
            if self._server.log is not None:
                self._server.log.unlink(missing_ok=True)


EARLY = EarlyStart()


@contextlib.contextmanager
def running_keycloak() -> Iterator[Keycloak]:
    """The Keycloak launched early (or now), once ready; stopped afterwards."""
    try:
        server = EARLY.take()
        wait_ready(server)
        yield server
    finally:
        EARLY.stop()


def decode_unverified(token: str) -> dict[str, Any]:
    """The claims of a JWT, unverified: to look at what Keycloak put in it."""
    import base64

    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


def pkce_authorize_url(server: Keycloak, client_id: str, redirect_uri: str, challenge: str) -> str:
    query = {"client_id": client_id, "response_type": "code", "scope": "openid", "state": "s",
             "redirect_uri": redirect_uri, "code_challenge": challenge,
             "code_challenge_method": "S256"}  # fmt: skip
    return f"{server.authorize_url}?{urllib.parse.urlencode(query)}"
