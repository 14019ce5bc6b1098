"""The ``dmp-fhir`` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .auth.cli import add_token_command
from .config import Settings, get_settings
from .logs import configure_logging

if TYPE_CHECKING:
    from .repository import Repository

log = logging.getLogger("dmp_fhir")


def _database_url(settings: Settings, stack: ExitStack, *, persistent: bool) -> str:
    """``MONGODB_URL`` when set; otherwise an embedded FerretDB started for this command."""
    if settings.mongodb_url:
        return settings.mongodb_url
    from .devdb import EmbeddedDatabase

    data_dir = Path(".cache/devdb") if persistent else None
    embedded = stack.enter_context(EmbeddedDatabase(data_dir=data_dir))
    log.warning(
        "MONGODB_URL is not set: using an embedded FerretDB (%s backend) at %s — "
        "for development and demos only.",
        embedded.backend,
        embedded.url,
    )
    return embedded.url


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


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .app import create_app

    settings = get_settings()
    with ExitStack() as stack:
        url = _database_url(settings, stack, persistent=not args.ephemeral)
        settings = settings.model_copy(update={"mongodb_url": url})
        if args.load:
            status = asyncio.run(_load(settings, args.load))
            if status:
                return status
        host = args.host or settings.host
        port = args.port or settings.port
        print(f"dmp-fhir serving {settings.base_url} (listening on {host}:{port})", flush=True)
        uvicorn.run(
            create_app(settings),
            host=host,
            port=port,
            log_level=settings.log_level,
            log_config=None,  # keep configure_logging's JSON handler
            access_log=False,  # our access log omits query values (dmp_fhir.rest.middleware)
            server_header=False,
            proxy_headers=False,
        )
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    settings = get_settings()
    with ExitStack() as stack:
        url = _database_url(settings, stack, persistent=True)
        return asyncio.run(_load(settings.model_copy(update={"mongodb_url": url}), args.paths))


async def _verify_audit(settings: Settings) -> int:
    from .audit import AuditTrail
    from .storage import Database

    assert settings.mongodb_url
    database = Database(settings.mongodb_url, settings.db)
    try:
        await database.connect()
        report = await AuditTrail(database, base_url=settings.base_url).verify()
    finally:
        await database.close()
    if report.ok:
        print(f"audit chain intact: {report.checked} events; head {report.head}")
        return 0
    print(
        f"audit chain BROKEN at event #{report.broken_at} (AuditEvent/{report.event_id}): "
        f"{report.reason}; {report.checked} events before it are intact"
    )
    return 1


def cmd_audit(args: argparse.Namespace) -> int:
    settings = get_settings()
    with ExitStack() as stack:
        url = _database_url(settings, stack, persistent=True)
        return asyncio.run(_verify_audit(settings.model_copy(update={"mongodb_url": url})))


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

    audit = sub.add_parser("audit", help="the audit trail: 'audit verify' checks its hash chain")
    audit.add_argument("action", choices=["verify"])
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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.func is cmd_serve:
        settings = get_settings()
        configure_logging(settings.log_level, json=settings.log_json)
    else:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result: int = args.func(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
