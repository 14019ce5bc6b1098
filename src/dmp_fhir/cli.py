"""The ``dmp-fhir`` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import uvicorn

from .auth.cli import add_token_command
from .config import Settings, get_settings
from .logs import configure_logging

if TYPE_CHECKING:
    from .audit import AuditTrail
    from .repository import Repository

log = logging.getLogger("dmp_fhir")


DEV_DATA_DIR = Path(".cache/devdb")


class CommandError(Exception):
    """A failure the user can act on: printed as one line, exit status 1."""


def _database_url(settings: Settings, stack: ExitStack, *, persistent: bool, serving: bool = False) -> str:
    """``MONGODB_URL`` when set; else the embedded database of a ``dmp-fhir serve`` running
    beside us (``devstate``); else an embedded FerretDB started for this command."""
    if settings.mongodb_url:
        return settings.mongodb_url
    from .devdb import EmbeddedDatabase
    from .devstate import remove_state, running_server, write_state

    data_dir = DEV_DATA_DIR if persistent else None
    if data_dir is not None:
        running = running_server(data_dir)
        if running is not None and serving:
            raise CommandError(
                f"another 'dmp-fhir serve' (pid {running.pid}) already runs on the embedded database "
                f"of {data_dir}: stop it first, or use --ephemeral"
            )
        if running is not None:
            log.info("using the embedded database of the server running beside us (pid %d) at %s",
                     running.pid, running.url)  # fmt: skip
            return running.url
    shield = _SignalShield()
    stack.callback(shield.restore)  # runs last, once the database has stopped
    try:
        embedded = stack.enter_context(EmbeddedDatabase(data_dir=data_dir))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CommandError(
            f"cannot start the embedded database ({first}); is another process using {data_dir}? "
            "Set MONGODB_URL to use a MongoDB server instead"
            if data_dir is not None
            else f"cannot start the embedded database ({first})"
        ) from None
    log.warning(
        "MONGODB_URL is not set: using an embedded FerretDB (%s backend) at %s — "
        "for development and demos only.",
        embedded.backend,
        embedded.url,
    )
    if serving and data_dir is not None:
        write_state(data_dir, embedded.url)
        stack.callback(remove_state, data_dir)  # runs before the database stops (LIFO)
    stack.callback(shield.ignore)  # runs first: a second Ctrl-C cannot cut the clean-up short
    return embedded.url


class _SignalShield:
    """Ignores SIGINT/SIGTERM while the embedded database stops, then restores the handlers."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self._saved: dict[int, Any] = {}

    def ignore(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in self.SIGNALS}

    def restore(self) -> None:
        for sig, handler in self._saved.items():
            if handler is not None:
                signal.signal(sig, handler)
        self._saved = {}


@contextlib.asynccontextmanager
async def _internal_repository(settings: Settings, job: str) -> AsyncIterator[Repository]:
    """A repository for an internal job (loading, retention purge): explicit, unrestricted,
    audited, never reachable from HTTP."""
    from .audit import AuditTrail
    from .repository import Repository
    from .search.indexes import index_fields
    from .storage import Database, ResourceStore

    assert settings.mongodb_url
    database = Database(settings.mongodb_url, settings.db)
    try:
        await database.connect()
        await database.ensure_indexes(index_fields())
        trail = AuditTrail(database, base_url=settings.base_url)
        yield Repository.internal(ResourceStore(database), settings, job, trail)
    finally:
        await database.close()


async def _load(settings: Settings, paths: Sequence[Path]) -> int:
    from .loader import load_paths

    async with _internal_repository(settings, "load") as repository:
        counts = await load_paths(repository, paths)
    print("loaded: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 1 if counts.get("failed") else 0


class _Server(uvicorn.Server):
    """uvicorn's server, minus one thing: after a graceful shutdown on SIGTERM or SIGINT,
    uvicorn raises the signal again, which kills the process before ``cmd_serve`` stops the
    embedded database (FerretDB and PostgreSQL were left running). This one only records it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def cmd_serve(args: argparse.Namespace) -> int:
    from .app import create_app

    settings = get_settings()
    with ExitStack() as stack:
        url = _database_url(settings, stack, persistent=not args.ephemeral, serving=True)
        settings = settings.model_copy(update={"mongodb_url": url})
        if args.load:
            status = asyncio.run(_load(settings, args.load))
            if status:
                return status
        host = args.host or settings.host
        port = args.port or settings.port
        print(f"dmp-fhir serving {settings.base_url} (listening on {host}:{port})", flush=True)
        config = uvicorn.Config(
            create_app(settings),
            host=host,
            port=port,
            log_level=settings.log_level,
            log_config=None,  # keep configure_logging's JSON handler
            access_log=False,  # our access log omits query values (dmp_fhir.rest.middleware)
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=settings.shutdown_timeout_seconds,
        )
        server = _Server(config)
        server.run()
        if not server.started:
            return 1  # the application failed to start (logged)
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    settings = get_settings()
    with ExitStack() as stack:
        url = _database_url(settings, stack, persistent=True)
        return asyncio.run(_load(settings.model_copy(update={"mongodb_url": url}), args.paths))


@contextlib.asynccontextmanager
async def _audit_trail(settings: Settings) -> AsyncIterator[AuditTrail]:
    """The audit trail of the configured database, for one command."""
    from .audit import AuditTrail
    from .storage import Database

    assert settings.mongodb_url
    database = Database(settings.mongodb_url, settings.db)
    try:
        await database.connect()
        yield AuditTrail(database, base_url=settings.base_url)
    finally:
        await database.close()


async def _verify_audit(settings: Settings) -> int:
    async with _audit_trail(settings) as trail:
        report = await trail.verify()
    if report.chain_ok:
        print(f"audit chain intact: {report.checked} events; head {report.head}")
    else:
        print(
            f"audit chain BROKEN at event #{report.broken_at} (AuditEvent/{report.event_id}): "
            f"{report.reason}; {report.checked} events before it are intact"
        )
    for difference in report.served:
        print(f"served copy wrong: {difference}")
    if report.served_problems > len(report.served):
        print(f"... {report.served_problems - len(report.served)} more served copies wrong")
    if report.served_problems:
        print(
            f"{report.served_problems} served AuditEvent(s) differ from the log: what patients "
            "read is not what was recorded ('dmp-fhir audit repair', or a restart of the server, "
            "restores them from the log)"
        )
    else:
        print(f"served copies: all {report.checked} match the log")
    return 0 if report.ok else 1


async def _repair_audit(settings: Settings) -> int:
    async with _audit_trail(settings) as trail:
        repaired = await trail.repair()
    print(
        f"served copies: {len(repaired.restored)} restored, {len(repaired.rewritten)} rewritten, "
        f"{len(repaired.removed)} removed (not in the log)"
    )
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    settings = get_settings()
    job = _repair_audit if args.action == "repair" else _verify_audit
    with ExitStack() as stack:
        url = _database_url(settings, stack, persistent=True)
        return asyncio.run(job(settings.model_copy(update={"mongodb_url": url})))


async def _purge(settings: Settings, now: datetime) -> int:
    async with _internal_repository(settings, "purge") as repository:
        done = await repository.lifecycle.purge_expired(now)
    for line in done:
        print(line)
    print(f"purge as of {now.isoformat()}: {len(done)} removal(s)")
    return 0


def _instant_arg(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date or instant: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def cmd_purge(args: argparse.Namespace) -> int:
    settings = get_settings()
    now = args.now or datetime.now(UTC)
    with ExitStack() as stack:
        url = _database_url(settings, stack, persistent=True)
        return asyncio.run(_purge(settings.model_copy(update={"mongodb_url": url}), now))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dmp-fhir",
        description="FHIR R4 server for the French shared health record (DMP).",
        epilog="Configuration comes from the environment: MONGODB_URL, DMP_FHIR_DB, "
        "DMP_FHIR_BASE_URL, ... (see the README).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--host", help="listen address (default: DMP_FHIR_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default: DMP_FHIR_PORT or 8080)")
    serve.add_argument(
        "--load",
        type=Path,
        nargs="*",
        default=[],
        metavar="PATH",
        help="load these bundles/NDJSON files first (idempotent)",
    )
    serve.add_argument(
        "--ephemeral",
        action="store_true",
        help="with the embedded database: start from empty data, keep nothing",
    )
    serve.set_defaults(func=cmd_serve)

    load = sub.add_parser("load", help="load bundles or NDJSON files (idempotent)")
    load.add_argument("paths", type=Path, nargs="+", metavar="PATH")
    load.set_defaults(func=cmd_load)

    audit = sub.add_parser(
        "audit",
        help="the audit trail: 'audit verify' checks its hash chain and the served copies; "
        "'audit repair' rewrites missing or altered served copies from the log",
    )
    audit.add_argument("action", choices=["verify", "repair"])
    audit.set_defaults(func=cmd_audit)

    purge = sub.add_parser(
        "purge",
        help="destroy what the retention rules say must go (closed DMPs, deceased patients, "
        "occupational health); safe to run twice",
    )
    purge.add_argument(
        "--now", type=_instant_arg, help="the date to judge retention against (ISO; default: now)"
    )
    purge.set_defaults(func=cmd_purge)

    add_token_command(sub)
    return parser


def _terminate(signum: int, frame: FrameType | None) -> None:
    """SIGTERM outside uvicorn's own handling (start-up, loading, the CLI's jobs): unwind like
    Ctrl-C does, so that ``ExitStack`` stops the embedded database."""
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.func is cmd_serve:
        settings = get_settings()
        configure_logging(settings.log_level, json=settings.log_json)
    else:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        result: int = args.func(args)
    except CommandError as exc:
        print(f"dmp-fhir: {exc}", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
