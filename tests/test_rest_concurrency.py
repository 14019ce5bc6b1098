"""Concurrent writers on one resource: no lost write, contiguous versions (FerretDB has no
atomic updates, so this is the proof that the unique history key decides)."""

from __future__ import annotations

import asyncio

import httpx

from . import fixtures as fx

JSON = {"Content-Type": "application/fhir+json"}


async def test_twenty_simultaneous_updates_lose_nothing(client: httpx.AsyncClient) -> None:
    created = (await client.post("/Patient", json=fx.patient(), headers=JSON)).json()
    pid = created["id"]

    async def update(n: int) -> httpx.Response:
        body = {**created, "name": [{"family": f"Writer{n}"}]}
        return await client.put(f"/Patient/{pid}", json=body, headers=JSON)

    responses = await asyncio.gather(*(update(n) for n in range(20)))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    versions = sorted(int(r.json()["meta"]["versionId"]) for r in responses)
    assert versions == list(range(2, 22)), "every writer gets its own version"
    history = (await client.get(f"/Patient/{pid}/_history", params={"_count": "100"})).json()
    assert [int(e["resource"]["meta"]["versionId"]) for e in history["entry"]] == list(range(21, 0, -1))
    written = {r.json()["meta"]["versionId"]: r.json()["name"][0]["family"] for r in responses}
    for entry in history["entry"][:-1]:
        res = entry["resource"]
        assert res["name"][0]["family"] == written[res["meta"]["versionId"]], "no write lost"
    current = (await client.get(f"/Patient/{pid}")).json()
    assert current["meta"]["versionId"] == "21"
    assert current == history["entry"][0]["resource"]


async def test_concurrent_if_match_lets_exactly_one_win(client: httpx.AsyncClient) -> None:
    created = (await client.post("/Patient", json=fx.patient(), headers=JSON)).json()
    pid = created["id"]
    headers = {**JSON, "If-Match": 'W/"1"'}
    responses = await asyncio.gather(
        *(
            client.put(f"/Patient/{pid}", json={**created, "gender": "male"}, headers=headers)
            for _ in range(10)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 1
    assert statuses.count(412) == 9
