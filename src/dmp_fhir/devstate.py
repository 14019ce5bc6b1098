"""The running development server's embedded database, for the commands run beside it.

``dmp-fhir serve`` without ``MONGODB_URL`` starts an embedded FerretDB over the persistent
PostgreSQL cluster of ``.cache/devdb``. A second process cannot start PostgreSQL on the same
cluster (its ``postmaster.pid`` lock), so ``serve`` writes ``.cache/devdb/server.json`` (the
URL and its pid) while it runs, and ``load``, ``audit verify`` and ``purge`` connect to that URL
instead of starting a database of their own.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

STATE_FILE = "server.json"


@dataclass(frozen=True, slots=True)
class RunningServer:
    url: str
    pid: int


def write_state(data_dir: Path, url: str) -> Path:
    """Publish ``url`` as this process's embedded database (atomically)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / STATE_FILE
    tmp = path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"url": url, "pid": os.getpid()}))
    tmp.replace(path)
    return path


def remove_state(data_dir: Path) -> None:
    """Remove the state file if it is still this process's."""
    found = _read(data_dir / STATE_FILE)
    if found is not None and found.pid == os.getpid():
        with contextlib.suppress(OSError):
            (data_dir / STATE_FILE).unlink()


def running_server(data_dir: Path) -> RunningServer | None:
    """The server publishing ``data_dir``'s database, if it is alive and its port accepts
    connections (a crashed server's file names a dead pid or a closed port)."""
    found = _read(data_dir / STATE_FILE)
    if found is None or found.pid == os.getpid() or not process_alive(found.pid):
        return None
    parts = urlsplit(found.url)
    if parts.hostname is None or parts.port is None:
        return None
    with socket.socket() as sock:
        sock.settimeout(3)
        if sock.connect_ex((parts.hostname, parts.port)) != 0:
            return None
    return found


def _read(path: Path) -> RunningServer | None:
    try:
        data = json.loads(path.read_text())
        return RunningServer(url=str(data["url"]), pid=int(data["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie is dead, merely not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True
