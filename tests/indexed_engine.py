"""The engine with real indexes (DocumentDB + FerretDB v2), built and started for a test session.

``tools/indexed-engine.sh`` builds it from ``../shared/engines/documentdb/`` (once per machine,
about three minutes) and starts a throwaway cluster. PostgreSQL's planner prefers a sequential
scan on small tables whatever indexes exist; the throwaway cluster runs with
``enable_seqscan = off`` so that ``explain()`` answers the question asked — is there an index
that serves this query? — rather than whether one is worth it on a few rows.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "indexed-engine.sh"
ENGINE_SOURCES = Path(
    os.environ.get("DMP_FHIR_DOCUMENTDB_DIR", ROOT.parent / "shared" / "engines" / "documentdb")
)


@contextlib.contextmanager
def indexed_engine() -> Iterator[str]:
    """The URL of a fresh indexed engine, stopped and removed afterwards."""
    built = subprocess.run([str(SCRIPT), "build"], capture_output=True, text=True, timeout=1800)
    if built.returncode != 0:
        raise RuntimeError(f"building the indexed engine failed:\n{built.stderr[-3000:]}")
    folder = Path(tempfile.mkdtemp(prefix="dmp-indexed-engine-"))
    os.chmod(folder, 0o755)  # PostgreSQL runs as user postgres
    started = subprocess.run([str(SCRIPT), "start", str(folder / "engine")], capture_output=True, text=True)
    if started.returncode != 0:
        raise RuntimeError(f"starting the indexed engine failed:\n{started.stderr[-3000:]}")
    try:
        line = next(x for x in started.stdout.splitlines() if x.startswith("MONGODB_URL="))
        _without_sequential_scans(folder / "engine")
        yield line.partition("=")[2]
    finally:
        subprocess.run([str(SCRIPT), "stop", str(folder / "engine")], capture_output=True, text=True)
        subprocess.run(["rm", "-rf", str(folder)], check=False)


def _without_sequential_scans(engine_dir: Path) -> None:
    values = dict(
        line.partition("=")[::2] for line in (engine_dir / "env").read_text().splitlines() if "=" in line
    )
    url = next(v for k, v in values.items() if "POSTGRES" in k.upper() and v.startswith("postgres"))
    command = ["psql", shlex.split(url)[0], "-q", "-v", "ON_ERROR_STOP=1"]
    command += ["-c", "ALTER SYSTEM SET enable_seqscan = off", "-c", "SELECT pg_reload_conf()"]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, capture_output=True, text=True, cwd="/")
