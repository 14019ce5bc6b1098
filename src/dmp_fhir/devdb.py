"""A throwaway MongoDB-compatible server for development and tests.

Production runs on MongoDB, but development machines often have neither Docker nor a ``mongod``
binary. FerretDB v1 speaks the MongoDB wire protocol over PostgreSQL (fast: equality filters on
top-level fields run in SQL) or SQLite (zero set-up, but every query is a scan decoded in Go). This
module builds our small FerretDB main (``tools/ferretdb``) once and starts it on a free loopback
port, over a private PostgreSQL cluster when PostgreSQL is installed, over SQLite otherwise.
``python -m dmp_fhir.devdb`` runs one in the foreground and prints its URL.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import hashlib
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from .devstate import process_alive

log = logging.getLogger(__name__)

Backend = Literal["auto", "postgresql", "sqlite"]
_TMP_PREFIX = "dmp-fhir-db-"  # each run's scratch folder; lets a later run clean up a killed one
Proc = subprocess.Popen[bytes]


def ensure_ferretdb_binary(repo_root: Path | None = None) -> Path:
    """Return the FerretDB binary, building it with ``go build`` when missing.

    Upstream's command cannot be ``go install``-ed (it panics without its generated build files), so
    we build our own main over FerretDB's embeddable package into the git-ignored ``.cache/bin``
    (~90 s with a cold Go module cache, ~2 s after). ``DMP_FHIR_FERRETDB_BIN`` may name a binary.
    """
    override = os.environ.get("DMP_FHIR_FERRETDB_BIN")
    if override:
        if not os.access(override, os.X_OK):
            raise RuntimeError(f"DMP_FHIR_FERRETDB_BIN={override} is not an executable file")
        return Path(override)
    root = repo_root or Path(__file__).resolve().parents[2]
    source = root / "tools" / "ferretdb"
    if not (source / "main.go").exists():
        raise RuntimeError(f"no {source}/main.go: use a checkout, or set DMP_FHIR_FERRETDB_BIN")
    # Named after its sources: a change to main.go or go.mod builds a new binary, never reuses
    # a stale one.
    digest = hashlib.sha256(b"".join((source / n).read_bytes() for n in ("main.go", "go.mod", "go.sum")))
    binary = root / ".cache" / "bin" / f"ferretdb-{digest.hexdigest()[:12]}"
    if binary.exists():
        return binary
    go = shutil.which("go") or shutil.which("go", path="/usr/local/go/bin")
    if go is None:
        raise RuntimeError("FerretDB is not built and Go is not installed: install Go >= 1.22"
                           " (go.dev/dl), or set MONGODB_URL to a MongoDB server")  # fmt: skip
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_name(f"ferretdb.{os.getpid()}.tmp")
    log.info("building FerretDB into %s (about 90 s the first time: Go fetches modules)", binary)
    started = time.monotonic()
    built = subprocess.run([go, "build", "-o", str(partial), "."], cwd=source, capture_output=True,
                           text=True)  # fmt: skip
    if built.returncode != 0:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"go build in {source} failed:\n{built.stderr[-4000:]}")
    partial.replace(binary)  # atomic: a concurrent build never exposes a half-written binary
    log.info("built FerretDB in %.1f s", time.monotonic() - started)
    return binary


class EmbeddedDatabase:
    """FerretDB on a free loopback port, with fresh data unless ``data_dir`` is given.

    With ``data_dir`` (``dmp-fhir serve``) the data survive restarts: the PostgreSQL cluster lives
    in ``data_dir/postgresql`` (or ``/var/tmp/dmp-fhir-<hash>/`` when user postgres cannot reach
    it), SQLite files in ``data_dir/sqlite``. ``backend`` forces one FerretDB backend.
    PostgreSQL runs as our child (not daemonised by ``pg_ctl``) so that we reap it: no orphan
    left to a PID 1 that may not reap zombies. Throwaway clusters run with fsync off.
    """

    def __init__(self, data_dir: Path | None = None, backend: Backend = "auto",
                 start_timeout: float = 30.0) -> None:  # fmt: skip
        self.data_dir = data_dir.resolve() if data_dir else None
        self.backend: Backend = backend  # "postgresql" or "sqlite" once started
        self.start_timeout = start_timeout
        self.port = 0
        self.postgres_port: int | None = None
        self.pgdata: Path | None = None
        self._tmp: Path | None = None
        self._ferretdb: Proc | None = None
        self._postgres: Proc | None = None

    @property
    def url(self) -> str:
        """The MongoDB connection string, e.g. ``mongodb://127.0.0.1:40123/``."""
        if not self.port:
            raise RuntimeError("EmbeddedDatabase is not started")
        return f"mongodb://127.0.0.1:{self.port}/"

    def __enter__(self) -> EmbeddedDatabase:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> EmbeddedDatabase:
        """Start PostgreSQL (if used) and FerretDB; return once FerretDB answers ``ping``."""
        if self._tmp is not None:
            raise RuntimeError("EmbeddedDatabase is already started")
        _reap_leftovers()
        started = time.monotonic()
        self._tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX))
        (self._tmp / "owner.pid").write_text(str(os.getpid()))
        atexit.register(self.stop)  # safety net when the caller forgets stop()
        try:
            self._start_ferretdb(self._start_postgres() if self._use_postgres() else self._sqlite())
        except BaseException:
            self.stop()
            raise
        elapsed = time.monotonic() - started
        log.info("FerretDB (%s) ready at %s in %.1f s", self.backend, self.url, elapsed)
        return self

    def stop(self) -> None:
        """Stop FerretDB, then PostgreSQL (fast shutdown); remove scratch files. Idempotent."""
        atexit.unregister(self.stop)
        ferretdb, self._ferretdb = self._ferretdb, None
        if ferretdb is not None:
            _stop_process(ferretdb, signal.SIGTERM)
        postgres, self._postgres = self._postgres, None
        if postgres is not None:
            _stop_process(postgres, signal.SIGINT)  # PostgreSQL's "fast" shutdown
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def _use_postgres(self) -> bool:
        problem = None
        if self.backend == "sqlite":
            return False
        if _pg_bindir() is None:
            problem = "PostgreSQL is not installed"
        elif os.geteuid() == 0 and _postgres_ids() is None:
            problem = "running as root and there is no user postgres to run PostgreSQL"
        if problem and self.backend == "postgresql":
            raise RuntimeError(problem)
        if problem:
            log.warning("%s: FerretDB uses SQLite, slower (every query scans in Go)", problem)
        return problem is None

    def _sqlite(self) -> list[str]:
        assert self._tmp is not None
        self.backend = "sqlite"
        folder = (self.data_dir or self._tmp) / "sqlite"
        folder.mkdir(parents=True, exist_ok=True)  # FerretDB requires it to exist
        return ["-handler", "sqlite", "-sqlite-dir", str(folder)]

    def _start_postgres(self) -> list[str]:
        tmp, bindir, ids = self._tmp, _pg_bindir(), _postgres_ids()
        assert tmp is not None and bindir is not None
        self.backend = "postgresql"
        if ids:  # the scratch folder receives the socket and the log, written by postgres
            os.chown(tmp, *ids)
        pgdata = self.pgdata = tmp / "pgdata" if self.data_dir is None else self._persistent()
        (tmp / "pgdata.path").write_text(str(pgdata))  # for _reap_leftovers
        if not (pgdata / "PG_VERSION").exists():
            _pg("initdb", "-D", str(pgdata), "-A", "trust", "-U", "postgres", "--no-sync",
                "-E", "UTF8", "--locale=C")  # fmt: skip
        port = self.postgres_port = _free_port()
        cmd = [str(bindir / "postgres"), "-D", str(pgdata), "-p", str(port), "-k", str(tmp),
               "-c", "listen_addresses=127.0.0.1",
               # FerretDB prepares its statements: a generic plan cannot see the key, so it would
               # never use the GIN indexes below; a custom plan per execution does.
               "-c", "plan_cache_mode=force_custom_plan"]  # fmt: skip
        if self.data_dir is None:  # throwaway data: speed over crash safety
            cmd += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        proc = self._postgres = _spawn(cmd, tmp / "postgres.log", as_postgres=True)
        _wait_for("PostgreSQL", proc, tmp / "postgres.log", self.start_timeout,
                  lambda: _postmaster_ready(pgdata, proc.pid))  # fmt: skip
        created = _pg("createdb", "-h", str(tmp), "-p", str(port), "-U", "postgres", "ferretdb",
                      check=False)  # fmt: skip
        if created.returncode != 0 and "already exists" not in created.stderr:
            raise RuntimeError(f"createdb failed: {created.stderr.strip()}")
        _pg("psql", "-h", str(tmp), "-p", str(port), "-U", "postgres", "-d", "ferretdb", "-q",
            "-v", "ON_ERROR_STOP=1", "-c", GIN_MIRRORS)  # fmt: skip
        return ["-handler", "postgresql",
                "-postgresql-url", f"postgres://postgres@127.0.0.1:{port}/ferretdb"]  # fmt: skip

    def _persistent(self) -> Path:
        """``data_dir/postgresql``, or a folder under /var/tmp if postgres cannot traverse it."""
        assert self.data_dir is not None
        wanted = self.data_dir / "postgresql"
        if _prepare_pg_dir(wanted):
            return wanted
        with contextlib.suppress(OSError):
            wanted.rmdir()  # the empty folder just made
        digest = hashlib.sha256(str(wanted).encode()).hexdigest()[:12]
        fallback = Path("/var/tmp") / f"dmp-fhir-{digest}" / "postgresql"
        log.warning("user postgres cannot reach %s (a parent folder is private): "
                    "keeping the cluster in %s", wanted, fallback)  # fmt: skip
        fallback.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if not _prepare_pg_dir(fallback):
            raise RuntimeError(f"user postgres cannot write {fallback}")
        return fallback

    def _start_ferretdb(self, args: list[str]) -> None:
        assert self._tmp is not None
        self.port = _free_port()
        cmd = [str(ensure_ferretdb_binary()), "-listen", f"127.0.0.1:{self.port}", *args]
        proc_log = self._tmp / "ferretdb.log"
        proc = self._ferretdb = _spawn(cmd, proc_log)
        (self._tmp / "ferretdb.pid").write_text(str(proc.pid))

        def answers_ping() -> bool:
            with socket.socket() as sock:  # cheap to poll, unlike a MongoClient's monitor
                if sock.connect_ex(("127.0.0.1", self.port)) != 0:
                    return False
            client: MongoClient[dict[str, object]]
            with (
                MongoClient(self.url, serverSelectionTimeoutMS=2000, connect=False) as client,
                contextlib.suppress(PyMongoError),
            ):
                return bool(client.admin.command("ping")["ok"])
            return False

        _wait_for("FerretDB", proc, proc_log, self.start_timeout, answers_ping)


#: Make the PostgreSQL backend use indexes. FerretDB v1 pushes a top-level equality down as
#: ``_jsonb->'field' @> value``, which the btree indexes of its own ``createIndexes`` can never
#: serve: every query scans its table. A GIN index on the same expression can. An event trigger
#: mirrors each btree index FerretDB creates (the leading field of every index the server asks
#: for, ``_id`` included) as a GIN index, now and for collections created later; the DO block
#: does the same for what a persistent cluster already holds. ``_deleted`` and ``_lu`` are not
#: mirrored: a boolean selects nothing, and dates are compared by range, never by ``@>``.
GIN_MIRRORS = r"""
CREATE OR REPLACE FUNCTION dmp_fhir_mirror_index(idx oid) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    tbl oid;
    expr text;
BEGIN
    SELECT i.indrelid INTO tbl
      FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
     WHERE i.indexrelid = idx AND a.amname = 'btree' AND i.indexprs IS NOT NULL;
    IF tbl IS NULL THEN
        RETURN;
    END IF;
    expr := pg_get_indexdef(idx, 1, true);
    IF expr NOT LIKE '(_jsonb -> %' OR expr LIKE '%''_deleted''%' OR expr LIKE '%''_lu''%' THEN
        RETURN;
    END IF;
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s USING gin (%s)',
                   left((SELECT relname FROM pg_class WHERE oid = tbl), 40) || '_'
                   || left(md5(expr), 12) || '_gin', tbl::regclass, expr);
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'dmp-fhir: no GIN mirror for index %: %', idx, SQLERRM;
END
$fn$;

CREATE OR REPLACE FUNCTION dmp_fhir_on_create_index() RETURNS event_trigger LANGUAGE plpgsql AS $fn$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT objid FROM pg_event_trigger_ddl_commands() WHERE object_type = 'index' LOOP
        PERFORM dmp_fhir_mirror_index(r.objid);
    END LOOP;
END
$fn$;

DROP EVENT TRIGGER IF EXISTS dmp_fhir_gin_mirror;
CREATE EVENT TRIGGER dmp_fhir_gin_mirror ON ddl_command_end WHEN TAG IN ('CREATE INDEX')
    EXECUTE FUNCTION dmp_fhir_on_create_index();

DO $do$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT i.indexrelid FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
              JOIN pg_namespace n ON n.oid = t.relnamespace
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'public', 'pg_toast') LOOP
        PERFORM dmp_fhir_mirror_index(r.indexrelid);
    END LOOP;
END
$do$;
"""


def _spawn(cmd: list[str], log_path: Path, as_postgres: bool = False) -> Proc:
    """Start ``cmd`` in its own session (Ctrl-C reaches us, not it), output to ``log_path``."""
    ids = _postgres_ids() if as_postgres else None
    with log_path.open("wb") as out:
        return subprocess.Popen(
            cmd, cwd=log_path.parent, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True, user=ids[0] if ids else None,
            group=ids[1] if ids else None, extra_groups=[] if ids else None,
        )  # fmt: skip


def _wait_for(what: str, proc: Proc, log_path: Path, timeout: float,
              ready: Callable[[], bool]) -> None:  # fmt: skip
    """Poll ``ready`` until true; fail with the log's tail if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            why = f"exited with status {proc.returncode}" if proc.returncode is not None else (
                f"was not ready within {timeout:.0f} s")  # fmt: skip
            raise RuntimeError(f"{what} {why}; its log ends with:\n{_tail(log_path)}")
        time.sleep(0.02)


def _stop_process(proc: Proc, sig: signal.Signals, timeout: float = 30.0) -> None:
    """Send ``sig`` to the process group, SIGKILL it after ``timeout``; always reap (no zombie)."""
    for signum, wait in ((sig, timeout), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait)
            return


def _postmaster_ready(pgdata: Path, pid: int) -> bool:
    """What ``pg_ctl -w`` checks: postmaster.pid is ours and its status line says "ready"."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except OSError:
        return False
    return len(lines) >= 8 and lines[0].strip() == str(pid) and lines[7].strip() == "ready"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"({exc})"


def _pg_bindir() -> Path | None:
    """The newest Debian-style ``/usr/lib/postgresql/N/bin``, else the one on PATH."""
    versions = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if p.parent.name.isdigit()]
    dirs = sorted(versions, key=lambda p: int(p.parent.name), reverse=True)
    on_path = shutil.which("pg_ctl")
    dirs += [Path(on_path).parent] if on_path else []
    return next((d for d in dirs if (d / "initdb").exists() and (d / "postgres").exists()), None)


def _postgres_ids() -> tuple[int, int] | None:
    """(uid, gid) of user postgres when we are root (initdb refuses root), else None."""
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(KeyError):
        entry = pwd.getpwnam("postgres")
        return entry.pw_uid, entry.pw_gid
    return None


def _prepare_pg_dir(path: Path) -> bool:
    """Create ``path`` for a cluster owned by postgres; False if postgres cannot reach it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    ids = _postgres_ids()
    if ids and path.stat().st_uid != ids[0]:
        os.chown(path, *ids)
    return _pg("test", "-w", str(path), "-a", "-x", str(path), check=False).returncode == 0


def _pg(tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool (or any command on PATH) as user postgres when we are root."""
    ids, bindir = _postgres_ids(), _pg_bindir()
    exe = str(bindir / tool) if bindir and (bindir / tool).exists() else tool
    done = subprocess.run(
        [exe, *args], cwd="/", stdin=subprocess.DEVNULL, capture_output=True, text=True,
        user=ids[0] if ids else None, group=ids[1] if ids else None,
        extra_groups=[] if ids else None,
    )  # fmt: skip
    if check and done.returncode != 0:
        raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def _reap_leftovers() -> None:
    """Stop what an earlier run left running when it was killed (SIGKILL, crash), then delete it."""
    for tmp in Path(tempfile.gettempdir()).glob(_TMP_PREFIX + "*"):
        try:
            if process_alive(int((tmp / "owner.pid").read_text())):
                continue
        except (OSError, ValueError):
            continue  # not ours, or being created right now
        log.warning("cleaning up after a run that died: %s", tmp)
        with contextlib.suppress(OSError, ValueError):
            pid = int((tmp / "ferretdb.pid").read_text())
            if b"ferretdb" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            pgdata = Path((tmp / "pgdata.path").read_text())
            if (pgdata / "postmaster.pid").exists():
                _pg("pg_ctl", "stop", "-D", str(pgdata), "-m", "fast", "-w", check=False)
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    """Run an embedded database in the foreground until Ctrl-C or SIGTERM; print its URL."""
    parser = argparse.ArgumentParser(prog="python -m dmp_fhir.devdb", description=main.__doc__)
    parser.add_argument("--data-dir", type=Path, help="keep the data here across restarts")
    parser.add_argument("--backend", choices=["auto", "postgresql", "sqlite"], default="auto")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    with EmbeddedDatabase(args.data_dir, backend=args.backend) as db:
        print(f"MONGODB_URL={db.url}", flush=True)
        while not stopping.wait(1.0):
            pass
        log.info("stopping")


if __name__ == "__main__":
    main()
