"""The ANS guide's own PDSm 3.1.1 example instances, through the API.

Each is posted through its matching interaction, changed only where the DMP's documented rules
require it (README, "PDSm 3.1.1 examples"): a patient known to the DMP (INS, opened by
$dmp-create), a confidentiality code from the DMP's value set, size and hash that match the
content, the directory entries the author references. Everything else is the guide's text.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from .lifecycle_helpers import JSON, create_body, new_ins
from .policy_env import PolicyEnv, policy_env

pytestmark = pytest.mark.asyncio(loop_scope="session")

EXAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "examples" / "pdsm-3.1.1"
if not EXAMPLES.is_dir():
    EXAMPLES = Path("/work/shared/examples/pdsm-3.1.1")
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
TRE_A07 = (
    "https://mos.esante.gouv.fr/NOS/TRE_A07-StatusVisibiliteDocument/FHIR/TRE-A07-StatusVisibiliteDocument"
)
TRE_G15 = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
IDNPS = "urn:oid:1.2.250.1.71.4.2.1"

if not EXAMPLES.is_dir():  # pragma: no cover - the shared folder is absent outside this workspace
    pytest.skip(
        "shared/examples/pdsm-3.1.1 is absent: the ANS examples cannot be read", allow_module_level=True
    )


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    return data


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def env(mongodb_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PolicyEnv]:
    async for e in policy_env(mongodb_url, Path(tmp_path_factory.mktemp("keys"))):
        yield e


#: The author of the examples (PractitionerRole/practitionerrole-example, Dr Sophie Leclerc),
#: as the directory holds her: a physician of the example's hospital.
AUTHOR = {
    "fhirUser": "Practitioner/practitioner-example",
    "profession": "10",
    "rpps": "810101201234",
    "organization": "Organization/org-example",
}
STATE: dict[str, str] = {}


def _sha1(data: bytes) -> str:
    return base64.b64encode(hashlib.sha1(data).digest()).decode()


def _dmp_label(document: dict[str, Any]) -> None:
    """The DMP binds the confidentiality codes (N/R/V) to HL7 v3 Confidentiality; TRE_A07
    carries only the DMP's visibility codes (MASQUE_PS, INVISIBLE_PATIENT, …)."""
    for concept in document.get("securityLabel") or []:
        for coding in concept.get("coding") or []:
            if coding.get("system") == TRE_A07 and coding.get("code") in ("N", "R", "V"):
                coding["system"] = CONFIDENTIALITY
    document.setdefault("securityLabel", [{"coding": [{"system": CONFIDENTIALITY, "code": "N"}]}])


async def test_organization_through_the_directory(env: PolicyEnv) -> None:
    r = await env.client.post(
        "/Organization", json=example("Organization-org-example.json"), headers={**env.system(), **JSON}
    )
    assert r.status_code == 201, r.text
    STATE["organization"] = r.json()["id"]
    # The directory entries the examples' author references (not examples of the guide: the
    # practitioner is the contained one of the DocumentReference example).
    contained = example("DocumentReference-exemple-pdsm-documentreference.json")["contained"][0]
    practitioner = {**contained, "id": "practitioner-example"}
    practitioner.pop("meta", None)
    r = await env.client.put(
        "/Practitioner/practitioner-example", json=practitioner, headers={**env.system(), **JSON}
    )
    assert r.status_code in (200, 201), r.text
    org_id = STATE["organization"]
    role = {
        "resourceType": "PractitionerRole",
        "id": "practitionerrole-example",
        "active": True,
        "practitioner": {"reference": "Practitioner/practitioner-example"},
        "organization": {"reference": f"Organization/{org_id}"},
        "code": [{"coding": [{"system": TRE_G15, "code": "10"}]}],
    }
    r = await env.client.put(
        "/PractitionerRole/practitionerrole-example", json=role, headers={**env.system(), **JSON}
    )
    assert r.status_code in (200, 201), r.text


async def test_patient_through_dmp_create(env: PolicyEnv) -> None:
    patient = example("Patient-fr-patient-123.json")
    body = create_body(new_ins(sex=1, year=80, month=1))
    params = [p for p in body["parameter"] if p["name"] not in ("birthName", "given", "birthDate", "gender")]
    params += [
        {"name": "birthName", "valueString": patient["name"][0]["family"]},
        *({"name": "given", "valueString": g} for g in patient["name"][0]["given"]),
        {"name": "birthDate", "valueDate": patient["birthDate"]},
        {"name": "gender", "valueCode": patient["gender"]},
        {"name": "patient", "resource": {k: v for k, v in patient.items() if k not in ("name", "id")}},
    ]
    author = env.headers({**AUTHOR, "organization": f"Organization/{STATE['organization']}"})
    r = await env.client.post(
        "/Patient/$dmp-create", json={**body, "parameter": params}, headers={**author, **JSON}
    )
    assert r.status_code == 201, r.text
    STATE["patient"] = r.json()["id"]


def _retarget(resource: dict[str, Any]) -> dict[str, Any]:
    """Only the DMP's rules: the patient known to the DMP, the organisation's id in it."""
    text = json.dumps(resource)
    text = text.replace("Patient/fr-patient-123", f"Patient/{STATE['patient']}")
    text = text.replace('"Organization/org-example"', f'"Organization/{STATE["organization"]}"')
    out: dict[str, Any] = json.loads(text)
    return out


async def test_comprehensive_document_submission_set_folder_and_binary_through_iti65(env: PolicyEnv) -> None:
    binary = example("Binary-6789.json")
    content = base64.b64decode(binary["data"])
    document = _retarget(example("DocumentReference-exemple-pdsm-documentreference.json"))
    _dmp_label(document)
    attachment = document["content"][0]["attachment"]
    attachment["size"], attachment["hash"] = len(content), _sha1(content)  # the guide's do not match
    submission = _retarget(example("List-ExampleSubmissionSet.json"))
    folder = _retarget(example("List-ExampleFolder.json"))
    entries = [
        (submission, "List/ExampleSubmissionSet"),
        (document, "DocumentReference/exemple-pdsm-documentreference"),
        (binary, "Binary/6789"),
        (folder, "List/ExampleFolder"),
    ]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"{env.settings.base_url}/{url}",
                "resource": res,
                "request": {"method": "PUT", "url": url},
            }
            for res, url in entries
        ],
    }
    author = env.headers({**AUTHOR, "organization": f"Organization/{STATE['organization']}"})
    r = await env.client.post("", json=bundle, headers={**author, **JSON})
    assert r.status_code == 200, r.text
    # The answer has the shape of the guide's ITI-65 response example.
    response = example("Bundle-a9c10f8a-882d-4000-a280-7150e0aeb478.json")
    assert r.json()["type"] == response["type"]
    expected = {e["response"]["location"].split("/")[0] for e in response["entry"]}
    got = {e["response"]["location"].split("/")[0] for e in r.json()["entry"]}
    assert expected <= got
    assert all(e["response"]["status"].startswith("201") for e in r.json()["entry"])
    # ITI-68 retrieves the content; the folder is found by its code; isArchived=false finds the set.
    pid = STATE["patient"]
    raw = await env.client.get("/Binary/6789", headers={**author, "Accept": "application/pdf"})
    assert raw.content == content
    folders = await env.client.get("/List", params={"patient": pid, "code": "folder"}, headers=author)
    assert [e["resource"]["id"] for e in folders.json()["entry"]] == ["ExampleFolder"]
    sets = await env.client.get("/List", params={"patient": pid, "isArchived": "false"}, headers=author)
    assert "ExampleSubmissionSet" in [e["resource"]["id"] for e in sets.json()["entry"]]
    # The patient reads the document and its contained author (Comprehensive profile).
    mine = await env.client.get("/DocumentReference/exemple-pdsm-documentreference", headers=env.patient(pid))
    assert mine.status_code == 200


async def test_simplified_publish_document_through_a_plain_create(env: PolicyEnv) -> None:
    document = _retarget(example("DocumentReference-PDSmSimplifiedExample.json"))
    _dmp_label(document)
    attachment = document["content"][0]["attachment"]
    data = base64.b64decode(attachment["data"])
    attachment["size"], attachment["hash"] = len(data), _sha1(data)  # the guide's do not match
    document.setdefault("context", {})["period"] = {"start": attachment["creation"]}
    author = env.headers({**AUTHOR, "organization": f"Organization/{STATE['organization']}"})
    r = await env.client.post("/DocumentReference", json=copy.deepcopy(document), headers={**author, **JSON})
    assert r.status_code == 201, r.text
