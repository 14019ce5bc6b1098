"""``dmp-fhir load``: bundles (JSON) and NDJSON files into the store, idempotently.

Entries with ``PUT Type/id`` are written with their id and skipped when unchanged, so loading
the samples twice creates no new versions.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from .errors import BadRequest, FhirError
from .repository import Repository

log = logging.getLogger(__name__)


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Files to load, in a stable order (directories are read one level deep, sorted)."""
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.iterdir() if p.suffix in (".json", ".ndjson"))
        else:
            yield path


def iter_resources(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(method, resource) pairs; a Bundle yields its entries."""
    text = path.read_bytes()
    if path.suffix == ".ndjson":
        for line in text.splitlines():
            if line.strip():
                yield "PUT", orjson.loads(line)
        return
    data = orjson.loads(text)
    if data.get("resourceType") == "Bundle":
        for entry in data.get("entry", []):
            method = (entry.get("request") or {}).get("method", "PUT")
            yield method, entry["resource"]
    else:
        yield "PUT", data


async def load_paths(repo: Repository, paths: Iterable[Path]) -> Counter[str]:
    """Load every file; returns counts of created / updated / unchanged / failed."""
    counts: Counter[str] = Counter()
    for file in iter_files(paths):
        for method, resource in iter_resources(file):
            rtype = resource.get("resourceType", "?")
            try:
                if method == "POST" or "id" not in resource:
                    await repo.create(rtype, resource)
                    counts["created"] += 1
                    continue
                result = await repo.update(rtype, resource["id"], resource, skip_unchanged=True)
            except FhirError as exc:
                counts["failed"] += 1
                log.error("%s: %s/%s: %s", file.name, rtype, resource.get("id"), exc.diagnostics)
                continue
            if not result.version.changed:
                counts["unchanged"] += 1
            elif result.created:
                counts["created"] += 1
            else:
                counts["updated"] += 1
    if not counts:
        raise BadRequest("Nothing to load.")
    return counts
