"""Issue 17: ``dmp-fhir serve`` as operators run it, in a process of its own.

- SIGTERM (what systemd, Docker and Kubernetes send) and SIGINT (Ctrl-C) stop the server
  gracefully and then the embedded FerretDB and PostgreSQL: no process of that server is left.
- ``load``, ``audit verify`` and ``purge`` run beside a serving ``dmp-fhir serve`` on the same
  embedded database (the state file ``.cache/devdb/server.json``), and a command that cannot get
  a database says so in one line.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .live_server import free_port

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("MONGODB_URL")), reason="MONGODB_URL is set: no embedded database"
)
ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "dmp_fhir"]
START_TIMEOUT_S = 120


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMP_FHIR_") and k != "MONGODB_URL"}
    env.update({"DMP_FHIR_DEV_MODE": "true", "DMP_FHIR_LOG_JSON": "false", "PYTHONUNBUFFERED": "1"})
    return env


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (FerretDB, the postmaster and its backends)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class Serving:
    def __init__(self, proc: subprocess.Popen[str], port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log
        self.base = f"http://127.0.0.1:{port}/fhir"


def start_serve(cwd: Path, *args: str) -> Serving:
    port = free_port()
    log = cwd / f"serve-{port}.log"
    env = {**cli_env(), "DMP_FHIR_BASE_URL": f"http://127.0.0.1:{port}/fhir"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*CLI, "serve", "--port", str(port), *args], cwd=cwd, env=env, stdout=out,
            stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"serve exited {proc.returncode}:\n{log.read_text()[-3000:]}"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/fhir/_health", timeout=2).status_code == 200:
                return Serving(proc, port, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    raise AssertionError(f"serve did not answer within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def stop(serving: Serving, sig: signal.Signals) -> tuple[int, set[int]]:
    """Send ``sig``; return the exit status and the processes it had below it."""
    below = descendants(serving.proc.pid)
    serving.proc.send_signal(sig)
    try:
        status = serving.proc.wait(60)
    except subprocess.TimeoutExpired:
        serving.proc.kill()
        serving.proc.wait()
        raise AssertionError(
            f"serve did not stop on {sig.name}:\n{serving.log.read_text()[-3000:]}"
        ) from None
    return status, below


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A working folder user postgres can traverse (its persistent cluster goes below)."""
    path = Path(tempfile.mkdtemp(prefix="dmp-fhir-serve-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_the_server_and_its_embedded_database(workdir: Path, sig: signal.Signals) -> None:
    serving = start_serve(workdir, "--ephemeral")
    below = descendants(serving.proc.pid)
    assert any(b"ferretdb" in Path(f"/proc/{pid}/cmdline").read_bytes() for pid in below if alive(pid))
    status, below = stop(serving, sig)
    assert status == 0, serving.log.read_text()[-3000:]
    left = [pid for pid in below if alive(pid)]
    assert not left, f"left running after {sig.name}: {left}"
    owners = [p.read_text() for p in Path(tempfile.gettempdir()).glob("dmp-fhir-db-*/owner.pid")]
    assert str(serving.proc.pid) not in owners  # its scratch folder is gone too
    assert "cleaning up after a run that died" not in serving.log.read_text()


def run_cli(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], cwd=cwd, env={**cli_env(), **env}, capture_output=True, text=True, timeout=300,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_cli_commands_use_the_running_servers_database(workdir: Path) -> None:
    serving = start_serve(workdir)
    try:
        state = json.loads((workdir / ".cache/devdb/server.json").read_text())
        assert state["pid"] == serving.proc.pid and state["url"].startswith("mongodb://127.0.0.1:")

        loaded = run_cli(workdir, "load", str(ROOT / "samples/00-organizations.json"))
        assert loaded.returncode == 0, loaded.stderr
        assert "loaded:" in loaded.stdout and "postmaster.pid" not in loaded.stderr
        assert "server running beside us" in loaded.stderr
        token = run_cli(workdir, "token", "--system", "ops", DMP_FHIR_BASE_URL=serving.base).stdout.strip()
        org = httpx.get(
            f"{serving.base}/Organization/org-chu-bellerive", headers={"Authorization": f"Bearer {token}"}
        )
        assert org.status_code == 200  # loaded by the CLI, served by the server

        verified = run_cli(workdir, "audit", "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "audit chain intact" in verified.stdout and "served copies: all" in verified.stdout
        purged = run_cli(workdir, "purge")
        assert purged.returncode == 0 and "removal(s)" in purged.stdout, purged.stderr

        second = run_cli(workdir, "serve", "--port", str(free_port()))
        assert second.returncode == 1
        assert (
            second.stderr.strip().count("\n") == 0
            and "already runs on the embedded database" in second.stderr
        )
    finally:
        status, below = stop(serving, signal.SIGTERM)
    assert status == 0
    assert not (workdir / ".cache/devdb/server.json").exists()
    assert not [pid for pid in below if alive(pid)]


def test_cli_without_a_database_fails_in_one_line(workdir: Path) -> None:
    done = run_cli(workdir, "audit", "verify", DMP_FHIR_FERRETDB_BIN=str(workdir / "no-such-ferretdb"))
    assert done.returncode == 1
    assert done.stderr.strip().startswith("dmp-fhir: cannot start the embedded database")
    assert "Traceback" not in done.stderr and done.stderr.strip().count("\n") == 0
