"""Bundle builders for history and search answers."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from ..storage.store import StoredVersion, format_instant, now_utc


def page_link(base: str, path: str, params: list[tuple[str, str]], **override: str | None) -> str:
    """``base/path?params`` with some parameters replaced (None removes one)."""
    kept = [(k, v) for k, v in params if k not in override]
    kept += [(k, v) for k, v in override.items() if v is not None]
    query = urlencode(kept)
    return f"{base}/{path}" + (f"?{query}" if query else "")


def history_bundle(
    base: str,
    versions: list[StoredVersion],
    *,
    self_link: str,
    next_link: str | None,
    total: int | None = None,
) -> dict[str, Any]:
    entries: list[dict[str, Any]] = []
    for v in versions:
        url = f"{v.type}/{v.id}"
        entry: dict[str, Any] = {"fullUrl": f"{base}/{url}"}
        if v.deleted:
            entry["request"] = {"method": "DELETE", "url": url}
            entry["response"] = {"status": "204 No Content"}
        else:
            entry["resource"] = v.resource
            entry["request"] = {
                "method": "POST" if v.version == 1 else "PUT",
                "url": v.type if v.version == 1 else url,
            }
            entry["response"] = {"status": "201 Created" if v.version == 1 else "200 OK"}
        entry["response"]["etag"] = v.etag
        entry["response"]["lastModified"] = format_instant(v.last_updated)
        entries.append(entry)
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "history",
        "meta": {"lastUpdated": format_instant(now_utc())},
    }
    if total is not None:
        bundle["total"] = total
    links = [{"relation": "self", "url": self_link}]
    if next_link:
        links.append({"relation": "next", "url": next_link})
    bundle["link"] = links
    if entries:
        bundle["entry"] = entries
    return bundle


def searchset_bundle(
    base: str,
    entries: list[tuple[str, dict[str, Any]]],
    *,
    total: int | None,
    links: dict[str, str],
    outcome: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``entries`` are (search mode, resource) pairs, matches first."""
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "meta": {"lastUpdated": format_instant(now_utc())},
    }
    if total is not None:
        bundle["total"] = total
    bundle["link"] = [{"relation": rel, "url": url} for rel, url in links.items()]
    out: list[dict[str, Any]] = [
        {
            "fullUrl": f"{base}/{res['resourceType']}/{res['id']}",
            "resource": res,
            "search": {"mode": mode},
        }
        for mode, res in entries
    ]
    if outcome is not None:
        out.append({"resource": outcome, "search": {"mode": "outcome"}})
    if out:
        bundle["entry"] = out
    return bundle
