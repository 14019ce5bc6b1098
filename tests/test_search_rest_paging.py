"""Paging through 250 Patients over REST: no duplicate, no gap, stable under concurrent inserts.

A module of its own so that its fresh database holds only these Patients (``pg-000`` … ``pg-249``,
family ``Pagination``, created in index order, born on 1900-01-01 + index days, female when the
index is even) and the ``Intrus`` Patients that one test inserts between page fetches.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio

from .conftest import BASE

pytestmark = pytest.mark.asyncio(loop_scope="session")

JSON = {"Content-Type": "application/fhir+json"}
N = 250
IDS = [f"pg-{i:03d}" for i in range(N)]  # creation order = birth order


def paging_patient(i: int) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": IDS[i],
        "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": f"1{i:014d}"}],
        "name": [{"family": "Pagination", "given": [f"N{i:03d}"]}],
        "gender": "female" if i % 2 == 0 else "male",
        "birthDate": (date(1900, 1, 1) + timedelta(days=i)).isoformat(),
    }


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def loaded(client: httpx.AsyncClient) -> httpx.AsyncClient:
    for i in range(N):
        response = await client.put(f"/Patient/{IDS[i]}", json=paging_patient(i), headers=JSON)
        assert response.status_code == 201, response.text
    return client


def match_ids(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def link(bundle: dict[str, Any], relation: str) -> str | None:
    for item in bundle.get("link", []):
        if item["relation"] == relation:
            return str(item["url"])
    return None


async def fetch(client: httpx.AsyncClient, url: str, params: dict[str, str] | None = None) -> dict[str, Any]:
    response = await client.get(url, params=params)
    assert response.status_code == 200, response.text
    bundle: dict[str, Any] = response.json()
    assert bundle["type"] == "searchset"
    assert link(bundle, "self")
    for entry in bundle.get("entry", []):
        res = entry["resource"]
        assert entry["fullUrl"] == f"{BASE}/{res['resourceType']}/{res['id']}"
    return bundle


async def walk(client: httpx.AsyncClient, first: dict[str, Any], relation: str) -> list[dict[str, Any]]:
    """``first`` and every page reached from it through ``relation`` links."""
    pages = [first]
    while (url := link(pages[-1], relation)) is not None:
        pages.append(await fetch(client, url))
        assert len(pages) <= N, "paging does not end"
    return pages


async def test_default_paging_is_stable_under_inserts(loaded: httpx.AsyncClient) -> None:
    """Newest first; Patients created while paging are newer than the first page, so they must
    neither appear in later pages nor shift them."""
    intruders: list[str] = []
    bundle = await fetch(loaded, "/Patient", {"_count": "20"})
    forward = [bundle]
    while (url := link(bundle, "next")) is not None:
        for _ in range(2):
            rid = f"intrus-{len(intruders):03d}"
            response = await loaded.put(
                f"/Patient/{rid}",
                json={"resourceType": "Patient", "id": rid, "name": [{"family": "Intrus"}]},
                headers=JSON,
            )
            assert response.status_code == 201, response.text
            intruders.append(rid)
        bundle = await fetch(loaded, url)
        forward.append(bundle)
        assert len(forward) <= 20
    pages = [match_ids(b) for b in forward]
    assert [len(p) for p in pages] == [20] * 12 + [10]
    flat = [rid for page in pages for rid in page]
    assert len(flat) == len(set(flat)), "a Patient appeared twice"
    assert flat == IDS[::-1], "gap, intruder or wrong order"
    assert len(intruders) == 24
    # the previous links walk back over the very same pages
    back = await walk(loaded, forward[-1], "previous")
    assert [match_ids(b) for b in back[: len(forward)]][::-1] == pages


async def test_total_accurate_on_every_page(loaded: httpx.AsyncClient) -> None:
    first = await fetch(loaded, "/Patient", {"family": "pagination", "_count": "20", "_total": "accurate"})
    pages = await walk(loaded, first, "next")
    assert len(pages) == 13
    assert all(b["total"] == N for b in pages)
    flat = [rid for b in pages for rid in match_ids(b)]
    assert flat == IDS[::-1]
    # a filtered search: the 125 women (even indexes)
    first = await fetch(loaded, "/Patient", {"family": "pagination", "gender": "female", "_count": "20",
                                             "_total": "accurate"})  # fmt: skip
    pages = await walk(loaded, first, "next")
    assert [len(match_ids(b)) for b in pages] == [20] * 6 + [5]
    assert all(b["total"] == 125 for b in pages)
    flat = [rid for b in pages for rid in match_ids(b)]
    assert flat == [IDS[i] for i in range(N - 2, -1, -2)]


async def test_summary_count(loaded: httpx.AsyncClient) -> None:
    bundle = await fetch(loaded, "/Patient", {"family": "pagination", "_summary": "count"})
    assert bundle["total"] == N and not bundle.get("entry")
    bundle = await fetch(loaded, "/Patient", {"family": "pagination", "gender": "male", "_summary": "count"})
    assert bundle["total"] == 125 and not bundle.get("entry")
    bundle = await fetch(
        loaded, "/Patient", {"family": "pagination", "birthdate": "1900-01", "_summary": "count"}
    )
    assert bundle["total"] == 31  # 1900-01-01 … 1900-01-31: indexes 0-30


@pytest.mark.parametrize(("sort", "expected"), [("birthdate", IDS), ("-birthdate", IDS[::-1]),
                                                ("_id", IDS), ("-_id", IDS[::-1])])  # fmt: skip
async def test_sorted_paging_forward_and_back(
    loaded: httpx.AsyncClient, sort: str, expected: list[str]
) -> None:
    first = await fetch(loaded, "/Patient", {"family": "pagination", "_sort": sort, "_count": "20"})
    pages = await walk(loaded, first, "next")
    flat = [rid for b in pages for rid in match_ids(b)]
    assert flat == expected
    back = await walk(loaded, pages[-1], "previous")
    assert [match_ids(b) for b in back][::-1] == [match_ids(b) for b in pages]


@pytest.mark.parametrize(("count", "sizes"), [("1", None), ("7", [7] * 35 + [5]), ("100", [100, 100, 50]),
                                              ("250", [250]), ("1000", [250])])  # fmt: skip
async def test_page_sizes(loaded: httpx.AsyncClient, count: str, sizes: list[int] | None) -> None:
    first = await fetch(loaded, "/Patient", {"family": "pagination", "_count": count})
    if sizes is None:  # _count=1: just the first three pages
        second = await fetch(loaded, link(first, "next") or "")
        third = await fetch(loaded, link(second, "next") or "")
        assert [match_ids(b) for b in (first, second, third)] == [[IDS[-1]], [IDS[-2]], [IDS[-3]]]
        return
    pages = await walk(loaded, first, "next")
    assert [len(match_ids(b)) for b in pages] == sizes
    assert [rid for b in pages for rid in match_ids(b)] == IDS[::-1]


async def test_paging_links_keep_the_criteria(loaded: httpx.AsyncClient) -> None:
    query = {"birthdate": "ge1900-06-01", "family": "pagination", "_count": "50", "_sort": "birthdate"}
    first = await fetch(loaded, "/Patient", query)
    pages = await walk(loaded, first, "next")
    # 1900-06-01 is day 151 of 1900 (31+28+31+30+31 = 151): indexes 151 … 249
    assert [rid for b in pages for rid in match_ids(b)] == IDS[151:]
