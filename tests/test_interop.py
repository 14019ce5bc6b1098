"""Interoperability (issue 9): the ``fhirpy`` (async) and ``fhirclient`` packages, used as their
documentation shows, against a real server over HTTP with real development tokens.

A directory system client (``system/*.cruds``) owns the resources these tests make:
Practitioner, Organization and PractitionerRole are what system clients may write.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import requests
from fhirclient import server as fhirclient_server
from fhirclient.models.humanname import HumanName
from fhirclient.models.identifier import Identifier
from fhirclient.models.practitioner import Practitioner
from fhirclient.models.practitionerrole import PractitionerRole
from fhirpy import AsyncFHIRClient
from fhirpy.base.exceptions import ResourceNotFound

from .live_server import LiveServer, live_server
from .policy_env import PolicyEnv, policy_env

RPPS = "urn:oid:1.2.250.1.71.4.2.1"


@pytest.fixture(scope="module")
def server(mongodb_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(mongodb_url, Path(tmp_path_factory.mktemp("interop"))) as live:
        yield live


async def test_fhirpy_create_search_page_include_update_delete(server: LiveServer) -> None:
    client = AsyncFHIRClient(server.base_url, authorization=f"Bearer {server.system_token()}")
    org = client.resource("Organization", name="Centre de santé fhirpy", active=True)
    await org.save()
    assert org.id
    created = []
    for i in range(5):
        practitioner = client.resource(
            "Practitioner",
            identifier=[{"system": RPPS, "value": f"1099900{i:04d}"}],
            name=[{"family": "Fhirpy", "given": [f"P{i}"]}],
        )
        await practitioner.save()
        created.append(practitioner)
        role = client.resource(
            "PractitionerRole",
            practitioner=practitioner.to_reference(),
            organization=org.to_reference(),
        )
        await role.create()

    # search + paging: fetch() is one page, fetch_all() follows the next links
    page = await client.resources("Practitioner").search(family="Fhirpy").limit(2).fetch()
    assert len(page) == 2
    everyone = await client.resources("Practitioner").search(family="Fhirpy").limit(2).fetch_all()
    assert sorted(p.id for p in everyone) == sorted(p.id for p in created)
    assert await client.resources("Practitioner").search(family="Fhirpy").count() == 5

    # _include: the roles with their practitioners in one Bundle
    bundle = (
        await client.resources("PractitionerRole")
        .search(organization=f"Organization/{org.id}")
        .include("PractitionerRole", "practitioner")
        .fetch_raw()
    )
    modes = sorted({e["search"]["mode"] for e in bundle.entry})
    assert modes == ["include", "match"]
    assert len([e for e in bundle.entry if e.resource.resourceType == "Practitioner"]) == 5

    # update (PUT with the id) and read back
    first = created[0]
    first["active"] = False
    await first.save()
    again = await client.reference("Practitioner", first.id).to_resource()
    assert again["active"] is False
    assert again["meta"]["versionId"] == "2"

    # delete, then the read is a 410/404
    await first.delete()
    with pytest.raises(ResourceNotFound):
        await client.reference("Practitioner", first.id).to_resource()


def test_fhirclient_create_search_page_include_update_delete(server: LiveServer) -> None:
    smart = fhirclient_server.FHIRServer(None, base_uri=f"{server.base_url}/")
    smart.session.headers["Authorization"] = f"Bearer {server.system_token()}"

    ids = []
    for i in range(3):
        practitioner = Practitioner()
        name = HumanName()
        name.family = "Fhirclient"
        name.given = [f"C{i}"]
        practitioner.name = [name]
        rpps = Identifier()
        rpps.system = RPPS
        rpps.value = f"1099901{i:04d}"
        practitioner.identifier = [rpps]
        result: dict[str, Any] = practitioner.create(smart)
        ids.append(result["id"])

    # search, all pages (perform_resources_iter follows the next links)
    search = Practitioner.where(struct={"family": "Fhirclient", "_count": "2"})
    first_page = next(search.perform_iter(smart))
    assert len(first_page.entry) == 2
    assert any(link.relation == "next" for link in first_page.link)
    assert sorted(p.id for p in search.perform_resources_iter(smart)) == sorted(ids)

    # _include through the FHIRSearch API (PractitionerRole -> Practitioner)
    role_json = {"resourceType": "PractitionerRole", "practitioner": {"reference": f"Practitioner/{ids[0]}"}}
    response = smart.post_json("PractitionerRole", role_json)
    assert response.status_code == 201
    include = PractitionerRole.where(struct={"practitioner": f"Practitioner/{ids[0]}"})
    include.include("practitioner")
    bundle = next(include.perform_iter(smart))
    assert sorted(e.search.mode for e in bundle.entry) == ["include", "match"]

    # read, update, delete
    practitioner = Practitioner.read(ids[1], smart)
    practitioner.active = True
    practitioner.update(smart)
    assert Practitioner.read(ids[1], smart).meta.versionId == "2"
    practitioner.delete(smart)
    with pytest.raises(requests.HTTPError):
        Practitioner.read(ids[1], smart)


# -- an MHD Document Consumer's requests (ITI-66, ITI-67, ITI-68), unchanged -------------------

INS_SYSTEM = "urn:oid:1.2.250.1.213.1.4.8"


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def env(mongodb_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PolicyEnv]:
    async for e in policy_env(mongodb_url, Path(tmp_path_factory.mktemp("mhd"))):
        yield e


@pytest.mark.asyncio(loop_scope="session")
async def test_mhd_consumer_requests(env: PolicyEnv) -> None:
    gp = {**env.headers("gp_nguyen"), "Accept": "application/fhir+json"}
    patient = (await env.client.get("/Patient/pat-002", headers=gp)).json()
    ins = next(i["value"] for i in patient["identifier"] if i["system"] == INS_SYSTEM)
    subject = f"{INS_SYSTEM}|{ins}"

    # ITI-67 Find Document References
    found = await env.client.get(
        "/DocumentReference", params={"patient.identifier": subject, "status": "current"}, headers=gp
    )
    assert found.status_code == 200, found.text
    bundle = found.json()
    assert bundle["type"] == "searchset" and bundle["entry"]
    docs = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "match"]
    assert all(d["subject"]["reference"] == "Patient/pat-002" for d in docs)
    by_type = await env.client.get(
        "/DocumentReference",
        params=[("patient", "Patient/pat-002"), ("status", "current"), ("_format", "json")],
        headers=gp,
    )
    assert {e["resource"]["id"] for e in by_type.json()["entry"]} == {d["id"] for d in docs}

    # ITI-66 Find Lists (submission sets)
    lists = await env.client.get(
        "/List",
        params={"patient.identifier": subject, "code": "submissionset", "status": "current"},
        headers=gp,
    )
    assert lists.status_code == 200, lists.text
    assert lists.json()["entry"]

    # ITI-68 Retrieve Document: the attachment URL, relative to the base, with the document's type
    attachment = next(d["content"][0]["attachment"] for d in docs if "url" in d["content"][0]["attachment"])
    raw = await env.client.get(f"/{attachment['url']}", headers={**gp, "Accept": attachment["contentType"]})
    assert raw.status_code == 200, raw.text
    assert raw.headers["content-type"].startswith(attachment["contentType"])
    assert len(raw.content) == attachment["size"]
