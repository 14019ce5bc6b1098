"""IHE MHD on the DMP: Provide Document Bundle (ITI-65), find (ITI-67/66), retrieve (ITI-68),
replacement and the French metadata update — through the API, with real tokens and policy."""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
import os
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pymongo import AsyncMongoClient

from dmp_fhir.mhd import CONFIDENTIALITY, SourceDocument, provide_bundle, sha1_base64
from dmp_fhir.storage.packing import TYPE_REGISTRY

from .policy_env import PolicyEnv, policy_env

pytestmark = pytest.mark.asyncio(loop_scope="session")

PATIENT = "Patient/pat-001"
AUTHOR = "PractitionerRole/prr-gp-martin"
IS_ARCHIVED = "http://esante.gouv.fr/cisis/fhir/StructureDefinition/PDSm_isArchived"
FHIR_JSON = {"Accept": "application/fhir+json"}


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def env(mongodb_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PolicyEnv]:
    async for e in policy_env(mongodb_url, tmp_path_factory.mktemp("mhd"), require_iti67_parameters=True):
        yield e


def pdf(text: str) -> bytes:
    """A small, genuine PDF naming ``text`` (unique content per document)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    return (
        b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
        b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
        b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]/Contents 4 0 R>>endobj\n"
        + f"4 0 obj<</Length {len(stream)}>>stream\n".encode()
        + stream
        + b"\nendstream endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
    )


def three_documents(tag: str) -> list[SourceDocument]:
    return [
        SourceDocument(pdf(f"consultation {tag}")),
        SourceDocument(pdf(f"ordonnance {tag}"), type_code="57833-6", class_code="42", title="Ordonnance"),
        SourceDocument(
            f"<ClinicalDocument>{tag}</ClinicalDocument>".encode(),
            content_type="text/xml",
            type_code="60591-5",
            class_code="11",
            title="Synthèse médicale",
        ),
    ]


async def raw_counts(env: PolicyEnv) -> dict[str, int]:
    """Every stored version and blob, straight from the database (no API, no policy)."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(env.settings.mongodb_url)
    try:
        db = client[env.settings.db]
        names = [
            "DocumentReference_history",
            "Binary_history",
            "List_history",
            "DocumentReference",
            "Binary",
            "List",
            "content.files",
            "content.chunks",
        ]
        return {name: await db[name].count_documents({}) for name in names}
    finally:
        await client.close()


async def post(env: PolicyEnv, bundle: dict[str, Any], who: str = "gp_martin") -> Any:
    return await env.client.post("", json=bundle, headers=env.headers(who))


def locations(response: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for entry in response.json()["entry"]:
        rtype, rid = entry["response"]["location"].split("/")[:2]
        out.setdefault(rtype, []).append(rid)
    return out


# -- ITI-65 ------------------------------------------------------------------------------


async def test_provide_bundle_stores_everything_and_resolves_references(env: PolicyEnv) -> None:
    docs = three_documents("happy")
    response = await post(env, provide_bundle(PATIENT, AUTHOR, docs))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == "transaction-response"
    assert [e["response"]["status"] for e in body["entry"]] == ["201 Created"] * 7
    made = locations(response)
    assert len(made["DocumentReference"]) == 3 and len(made["Binary"]) == 3 and len(made["List"]) == 1
    submission = (await env.client.get(f"List/{made['List'][0]}", headers=env.headers("gp_martin"))).json()
    assert [i["item"]["reference"] for i in submission["entry"]] == [
        f"DocumentReference/{d}" for d in made["DocumentReference"]
    ]
    for doc_id, bin_id, source in zip(made["DocumentReference"], made["Binary"], docs, strict=True):
        doc = (await env.client.get(f"DocumentReference/{doc_id}", headers=env.headers("gp_martin"))).json()
        assert doc["subject"]["reference"] == PATIENT
        assert doc["content"][0]["attachment"]["url"] == f"Binary/{bin_id}"
        raw = await env.client.get(
            f"Binary/{bin_id}", headers={**env.headers("gp_martin"), "Accept": source.content_type}
        )
        assert raw.status_code == 200
        assert raw.content == source.content  # byte for byte
        assert sha1_base64(raw.content) == doc["content"][0]["attachment"]["hash"]
        assert raw.headers["content-type"].startswith(source.content_type)


async def test_provide_bundle_answers_only_resources_asked_for(env: PolicyEnv) -> None:
    bundle = provide_bundle(PATIENT, AUTHOR, [SourceDocument(pdf("echo"))])
    response = await env.client.post(
        "", json=bundle, headers={**env.headers("gp_martin"), "Prefer": "return=representation"}
    )
    assert response.status_code == 200
    assert {e["resource"]["resourceType"] for e in response.json()["entry"]} == {
        "List",
        "DocumentReference",
        "Binary",
    }


def _doc(bundle: dict[str, Any], n: int = 0) -> dict[str, Any]:
    docs = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference"]
    return docs[n]


def _entry_index(bundle: dict[str, Any], rtype: str, n: int = 0) -> int:
    return [i for i, e in enumerate(bundle["entry"]) if e["resource"]["resourceType"] == rtype][n]


Mutation = Callable[[dict[str, Any]], None]


def _drop(element: str) -> Mutation:
    return lambda b: _doc(b, 2).pop(element)


def _set_attachment(key: str, value: Any) -> Mutation:
    return lambda b: _doc(b, 1)["content"][0]["attachment"].__setitem__(key, value)


def _other_subject(b: dict[str, Any]) -> None:
    _doc(b, 1)["subject"] = {"reference": "Patient/pat-002"}


def _unknown_patient(b: dict[str, Any]) -> None:
    for e in b["entry"]:
        if "subject" in e["resource"]:
            e["resource"]["subject"] = {"reference": "Patient/pat-unknown"}


def _unlisted(b: dict[str, Any]) -> None:
    b["entry"][0]["resource"]["entry"].pop()


def _dangling(b: dict[str, Any]) -> None:
    _doc(b, 0)["content"][0]["attachment"]["url"] = "urn:uuid:00000000-0000-0000-0000-000000000000"


def _duplicate_full_url(b: dict[str, Any]) -> None:
    b["entry"][-1]["fullUrl"] = b["entry"][1]["fullUrl"]


def _wrong_security_context(b: dict[str, Any]) -> None:
    first_doc_url = b["entry"][_entry_index(b, "DocumentReference", 0)]["fullUrl"]
    b["entry"][_entry_index(b, "Binary", 2)]["resource"]["securityContext"] = {"reference": first_doc_url}


def _same_master_identifier(b: dict[str, Any]) -> None:
    _doc(b, 2)["masterIdentifier"] = dict(_doc(b, 0)["masterIdentifier"])


def _source_patient(patient: dict[str, Any]) -> Mutation:
    """The document's context.sourcePatientInfo: the patient as the sender's system knew them."""

    def mutate(b: dict[str, Any]) -> None:
        doc = _doc(b, 1)
        if patient.get("resourceType") == "Patient":
            doc["contained"] = [*doc.get("contained", []), patient]
            doc.setdefault("context", {})["sourcePatientInfo"] = {"reference": f"#{patient['id']}"}
        else:
            doc.setdefault("context", {})["sourcePatientInfo"] = patient

    return mutate


NIR = "urn:oid:1.2.250.1.213.1.4.8"
#: A contained Patient with an INS that is not pat-001's (a wrong-patient feed).
OTHER_INS = {
    "resourceType": "Patient",
    "id": "src",
    "identifier": [{"system": NIR, "value": "299999999999999"}],
}


CONSISTENCY_FAILURES: dict[str, tuple[Mutation, int, str]] = {
    "source patient is another patient": (
        _source_patient({"reference": "Patient/pat-002"}),
        422,
        "sourcePatientInfo",
    ),
    "source patient carries another INS": (_source_patient(OTHER_INS), 422, "sourcePatientInfo"),
    "subject of another patient": (_other_subject, 422, "subject"),
    "unknown patient": (_unknown_patient, 422, "subject"),
    "document not in the submission set": (_unlisted, 422, "entry"),
    "hash does not match": (_set_attachment("hash", sha1_base64(b"other")), 422, "hash"),
    "size does not match": (_set_attachment("size", 3), 422, "size"),
    "hash missing": (lambda b: _doc(b, 1)["content"][0]["attachment"].pop("hash"), 422, "hash"),
    "type missing": (_drop("type"), 422, "type"),
    "category missing": (_drop("category"), 422, "category"),
    "author missing": (_drop("author"), 422, "author"),
    "date missing": (_drop("date"), 422, "date"),
    "securityLabel missing": (_drop("securityLabel"), 422, "securityLabel"),
    "masterIdentifier missing": (_drop("masterIdentifier"), 422, "masterIdentifier"),
    "two documents share a masterIdentifier": (_same_master_identifier, 422, "masterIdentifier"),
    "urn:uuid that no entry has": (_dangling, 400, "Bundle.entry["),
    "duplicate fullUrl": (_duplicate_full_url, 400, "fullUrl"),
    "content claimed by another document": (_wrong_security_context, 422, "url"),
}


@pytest.mark.parametrize("case", sorted(CONSISTENCY_FAILURES))
async def test_each_inconsistency_is_one_precise_outcome_and_stores_nothing(
    env: PolicyEnv, case: str
) -> None:
    mutate, status, where = CONSISTENCY_FAILURES[case]
    bundle = provide_bundle(PATIENT, AUTHOR, three_documents(case))
    mutate(bundle)
    before = await raw_counts(env)
    response = await post(env, bundle)
    assert response.status_code == status, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert len(outcome["issue"]) == 1
    issue = outcome["issue"][0]
    assert issue["severity"] == "error"
    assert "Bundle.entry[" in json.dumps(issue)  # names the failing entry
    assert where in " ".join(issue.get("expression", [])) + issue["diagnostics"]
    assert "Traceback" not in response.text
    assert await raw_counts(env) == before


async def test_a_source_patient_that_is_the_subject_is_accepted(env: PolicyEnv) -> None:
    """The same INS (whatever the OID spelling of the test space), a contained Patient without
    an INS (nothing to compare), or the subject's own reference: stored."""
    patient = (await env.client.get(f"/{PATIENT}", headers=env.headers("gp_martin"))).json()
    ins = next(i for i in patient["identifier"] if i["system"] in (NIR, "urn:oid:1.2.250.1.213.1.4.10"))
    for source in (
        {"resourceType": "Patient", "id": "src", "identifier": [dict(ins)]},
        {"resourceType": "Patient", "id": "src", "name": [{"family": "Sans INS"}]},
        {"reference": PATIENT},
    ):
        bundle = provide_bundle(PATIENT, AUTHOR, three_documents(f"source {json.dumps(source)}"))
        _source_patient(source)(bundle)
        response = await post(env, bundle)
        assert response.status_code == 200, response.text


async def test_a_plain_document_write_checks_its_source_patient_too(env: PolicyEnv) -> None:
    bundle = provide_bundle(PATIENT, AUTHOR, [SourceDocument(pdf("plain wrong patient"))])
    doc = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference")
    doc["content"][0]["attachment"].pop("url")
    doc["content"][0]["attachment"]["data"] = base64.b64encode(pdf("plain wrong patient")).decode()
    doc["contained"] = [OTHER_INS]
    doc["context"]["sourcePatientInfo"] = {"reference": "#src"}
    before = await raw_counts(env)
    response = await env.client.post("/DocumentReference", json=doc, headers=env.headers("gp_martin"))
    assert response.status_code == 422, response.text
    assert "sourcePatientInfo" in response.text and "another patient" in response.text
    assert await raw_counts(env) == before


async def test_concurrent_submissions_of_one_document_store_it_once(env: PolicyEnv) -> None:
    """A sender that times out and sends the same Bundle again while the first is still being
    written: the masterIdentifier's claim lets one through, the others get a 409."""
    bundle = provide_bundle(PATIENT, AUTHOR, three_documents("sent twice at once"))
    answers = await asyncio.gather(*(post(env, bundle) for _ in range(4)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200, 409, 409, 409], [a.text[:300] for a in answers]
    for answer in answers:
        if answer.status_code == 409:
            assert "masterIdentifier" in answer.text
    master = next(
        e["resource"]["masterIdentifier"] for e in bundle["entry"] if "masterIdentifier" in e["resource"]
    )
    found = await env.client.get(
        "/DocumentReference",
        params={
            "identifier": f"{master['system']}|{master['value']}",
            "patient": PATIENT,
            "status": "current",
        },
        headers=env.headers("gp_martin"),
    )
    assert found.json()["total"] == 1
    again = await post(env, bundle)  # and later, the search answers as before
    assert again.status_code == 409 and "already exists" in again.text


async def test_concurrent_plain_posts_of_one_document_store_it_once(env: PolicyEnv) -> None:
    bundle = provide_bundle(PATIENT, AUTHOR, [SourceDocument(pdf("plain, posted twice at once"))])
    doc = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference")
    doc["content"][0]["attachment"].pop("url")
    doc["content"][0]["attachment"]["data"] = base64.b64encode(pdf("plain, posted twice at once")).decode()
    answers = await asyncio.gather(
        *(env.client.post("/DocumentReference", json=doc, headers=env.headers("gp_martin")) for _ in range(4))
    )
    assert sorted(a.status_code for a in answers) == [201, 409, 409, 409], [a.text[:300] for a in answers]


async def test_a_refused_submission_frees_its_master_identifier(env: PolicyEnv) -> None:
    """Refused after its masterIdentifier was claimed (the policy and the DMP profile run in
    the write guard): the claim is released, and the corrected Bundle, sent at once, goes
    through."""
    bundle = provide_bundle(PATIENT, AUTHOR, three_documents("refused then corrected"))
    wrong = copy.deepcopy(bundle)
    _doc(wrong, 0)["type"] = {"coding": [{"system": "http://loinc.org", "code": "00000-0"}]}
    refused = await post(env, wrong)  # a type outside the DMP's: refused by the write guard
    assert refused.status_code in (403, 422), refused.text
    master = _doc(bundle, 0)["masterIdentifier"]
    key = f"DocumentReference|{master['system']}|{master['value']}"
    assert await env.database.db["dmp_identifier"].find_one({"_id": key}) is None
    corrected = await post(env, bundle)
    assert corrected.status_code == 200, corrected.text


async def test_a_claim_left_by_a_crash_blocks_only_until_the_transaction_timeout(env: PolicyEnv) -> None:
    bundle = provide_bundle(PATIENT, AUTHOR, three_documents("claimed by a crashed writer"))
    master = _doc(bundle, 0)["masterIdentifier"]
    key = f"DocumentReference|{master['system']}|{master['value']}"
    claims = env.database.db["dmp_identifier"]
    crashed = {"_id": key, "type": "DocumentReference", "rid": "never-written", "patient": "pat-001"}
    await claims.insert_one({**crashed, "at": datetime.now(UTC)})
    blocked = await post(env, bundle)
    assert blocked.status_code == 409 and "being submitted" in blocked.text
    await claims.replace_one({"_id": key}, {**crashed, "at": datetime.now(UTC) - timedelta(hours=1)})
    assert (await post(env, bundle)).status_code == 200


async def test_patient_without_ins_is_refused(env: PolicyEnv) -> None:
    repo = await env.internal_repository()
    await repo.update(
        "Patient",
        "pat-sans-ins",
        {
            "resourceType": "Patient",
            "id": "pat-sans-ins",
            "identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.7", "value": "IPP-77"}],
            "name": [{"family": "PROVISOIRE"}],
            "generalPractitioner": [{"reference": AUTHOR}],
        },
    )
    before = await raw_counts(env)
    response = await post(env, provide_bundle("Patient/pat-sans-ins", AUTHOR, [SourceDocument(pdf("x"))]))
    assert response.status_code == 422
    assert "INS" in response.json()["issue"][0]["diagnostics"]
    assert await raw_counts(env) == before


async def test_a_second_submission_of_the_same_document_is_a_conflict(env: PolicyEnv) -> None:
    bundle = provide_bundle(PATIENT, AUTHOR, [SourceDocument(pdf("twice"))])
    assert (await post(env, copy.deepcopy(bundle))).status_code == 200
    before = await raw_counts(env)
    again = await post(env, bundle)
    assert again.status_code == 409
    assert "masterIdentifier" in again.text
    assert await raw_counts(env) == before


async def test_policy_refusal_in_the_last_entry_stores_nothing(env: PolicyEnv) -> None:
    """The GP may write reports, but not a document authored by someone else."""
    bundle = provide_bundle(PATIENT, AUTHOR, three_documents("refused"))
    _doc(bundle, 2)["author"] = [{"reference": "PractitionerRole/prr-cardio-roux"}]
    before = await raw_counts(env)
    response = await post(env, bundle)
    assert response.status_code == 403
    assert await raw_counts(env) == before


@pytest.mark.parametrize("who", ["kine", "pharma"])
async def test_professionals_without_access_store_nothing(env: PolicyEnv, who: str) -> None:
    bundle = provide_bundle("Patient/pat-005", "PractitionerRole/prr-kine-girard", three_documents(who))
    before = await raw_counts(env)
    response = await post(env, bundle, who=who)
    assert response.status_code in (403, 404)
    assert await raw_counts(env) == before


async def test_unauthenticated_provide_bundle_is_refused(env: PolicyEnv) -> None:
    before = await raw_counts(env)
    response = await env.client.post("", json=provide_bundle(PATIENT, AUTHOR, [SourceDocument(pdf("anon"))]))
    assert response.status_code == 401
    assert await raw_counts(env) == before


async def test_inline_attachment_becomes_a_retrievable_binary(env: PolicyEnv) -> None:
    content = pdf("inline")
    bundle = provide_bundle(PATIENT, AUTHOR, [SourceDocument(content)])
    bundle["entry"] = [e for e in bundle["entry"] if e["resource"]["resourceType"] != "Binary"]
    attachment = _doc(bundle)["content"][0]["attachment"]
    attachment.pop("url")
    attachment["data"] = base64.b64encode(content).decode()
    response = await post(env, bundle)
    assert response.status_code == 200, response.text
    doc_id = locations(response)["DocumentReference"][0]
    doc = (await env.client.get(f"DocumentReference/{doc_id}", headers=env.headers("gp_martin"))).json()
    attachment = doc["content"][0]["attachment"]
    assert "data" not in attachment and attachment["url"].startswith("Binary/")
    raw = await env.client.get(
        attachment["url"], headers={**env.headers("gp_martin"), "Accept": "application/pdf"}
    )
    assert raw.content == content


# -- replacement -----------------------------------------------------------------------


async def test_replacement_supersedes_the_old_document_atomically(env: PolicyEnv) -> None:
    first = await post(env, provide_bundle(PATIENT, AUTHOR, [SourceDocument(pdf("v1"), title="CR v1")]))
    old_id = locations(first)["DocumentReference"][0]
    second = await post(
        env,
        provide_bundle(
            PATIENT,
            AUTHOR,
            [SourceDocument(pdf("v2"), title="CR v2", replaces=f"DocumentReference/{old_id}")],
        ),
    )
    assert second.status_code == 200, second.text
    new_id = locations(second)["DocumentReference"][0]
    old = (await env.client.get(f"DocumentReference/{old_id}", headers=env.headers("gp_martin"))).json()
    assert old["status"] == "superseded" and old["meta"]["versionId"] == "2"
    current = await env.client.get(
        "DocumentReference",
        params={"patient": "pat-001", "status": "current", "_count": "500", "_elements": "id"},
        headers=env.headers("gp_martin"),
    )
    ids = {e["resource"]["id"] for e in current.json()["entry"]}
    assert new_id in ids and old_id not in ids
    # Replacing it again is refused: only a current document can be replaced.
    third = await post(
        env,
        provide_bundle(PATIENT, AUTHOR, [SourceDocument(pdf("v3"), replaces=f"DocumentReference/{old_id}")]),
    )
    assert third.status_code == 422


async def test_only_the_author_replaces_a_document(env: PolicyEnv) -> None:
    first = await post(env, provide_bundle(PATIENT, AUTHOR, [SourceDocument(pdf("mine"))]))
    old_id = locations(first)["DocumentReference"][0]
    before = await raw_counts(env)
    other = provide_bundle(
        PATIENT,
        "PractitionerRole/prr-gp-nguyen",
        [SourceDocument(pdf("theirs"), replaces=f"DocumentReference/{old_id}")],
    )
    response = await post(env, other, who="gp_nguyen")
    assert response.status_code in (403, 404)
    assert await raw_counts(env) == before
    old = (await env.client.get(f"DocumentReference/{old_id}", headers=env.headers("gp_martin"))).json()
    assert old["status"] == "current"


# -- ITI-67 / ITI-66 -------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"patient": "pat-001"},
        {"status": "current"},
        {"type": "http://loinc.org|11488-4"},
    ],
)
async def test_iti67_without_patient_and_status_is_refused(env: PolicyEnv, params: dict[str, str]) -> None:
    response = await env.client.get("DocumentReference", params=params, headers=env.headers("gp_martin"))
    assert response.status_code == 400
    assert response.json()["issue"][0]["code"] == "required"


@pytest.mark.parametrize(
    "params",
    [
        {"patient": "pat-001", "status": "current"},
        {"patient.identifier": "urn:oid:1.2.250.1.213.1.4.8|258049999900177", "status": "current"},
        {"patient": "pat-001", "status": "current", "type": "http://loinc.org|57833-6"},
        {"patient": "pat-001", "status": "current", "category": "42"},
        {"patient": "pat-001", "status": "current", "creation": "ge2020-01-01"},
        {"patient": "pat-001", "status": "current", "period-start": "ge2020-01-01"},
        {"patient": "pat-001", "status": "current", "isArchived": "false"},
        {"patient": "pat-001", "status": "current", "security-label": "N"},
        {"patient": "pat-001", "status": "current,superseded", "_include": "DocumentReference:subject"},
        {
            "patient": "pat-001",
            "status": "current",
            "author": AUTHOR,
        },
    ],
)
async def test_iti67_queries_a_consumer_sends(env: PolicyEnv, params: dict[str, str]) -> None:
    response = await env.client.get("DocumentReference", params=params, headers=env.headers("gp_martin"))
    assert response.status_code == 200, response.text
    docs = [e["resource"] for e in response.json().get("entry", []) if e["search"]["mode"] == "match"]
    assert docs, params
    assert all(d["subject"]["reference"] == PATIENT for d in docs)


async def test_iti67_follows_the_access_policy(env: PolicyEnv) -> None:
    params = {"patient": "pat-002", "status": "current", "_count": "200"}
    gp = await env.client.get("DocumentReference", params=params, headers=env.headers("gp_nguyen"))
    kine = await env.client.get("DocumentReference", params=params, headers=env.headers("kine"))
    seen_by_gp = {e["resource"]["id"] for e in gp.json().get("entry", [])}
    seen_by_kine = {e["resource"]["id"] for e in kine.json().get("entry", [])}
    assert seen_by_kine and seen_by_kine < seen_by_gp  # the GP sees all, the physiotherapist a part


async def test_iti66_finds_submission_sets(env: PolicyEnv) -> None:
    response = await env.client.get(
        "List",
        params={"patient": "pat-001", "code": "submissionset", "status": "current"},
        headers=env.headers("gp_martin"),
    )
    assert response.status_code == 200
    assert response.json()["entry"]


# -- ITI-68 ----------------------------------------------------------------------------


async def test_iti68_binary_follows_its_document(env: PolicyEnv) -> None:
    content = pdf("retrieve")
    made = locations(await post(env, provide_bundle(PATIENT, AUTHOR, [SourceDocument(content)])))
    bin_id = made["Binary"][0]
    fhir = await env.client.get(f"Binary/{bin_id}", headers={**env.headers("gp_martin"), **FHIR_JSON})
    assert fhir.status_code == 200
    assert base64.b64decode(fhir.json()["data"]) == content
    for who in ("kine", "pharma"):
        for accept in ("application/pdf", "application/fhir+json"):
            refused = await env.client.get(f"Binary/{bin_id}", headers={**env.headers(who), "Accept": accept})
            assert refused.status_code in (403, 404)
            assert content not in refused.content


# -- metadata update (conditional PATCH) ------------------------------------------------


async def _one_document(env: PolicyEnv, tag: str) -> tuple[str, dict[str, Any]]:
    made = locations(await post(env, provide_bundle(PATIENT, AUTHOR, [SourceDocument(pdf(tag))])))
    doc_id = made["DocumentReference"][0]
    doc = (await env.client.get(f"DocumentReference/{doc_id}", headers=env.headers("gp_martin"))).json()
    return doc_id, doc


def _identifier_query(doc: dict[str, Any]) -> str:
    master = doc["masterIdentifier"]
    return f"identifier={master['system']}|{master['value']}"


PATCH = {"Content-Type": "application/json-patch+json"}


async def test_metadata_update_changes_status_labels_and_archive_flag(env: PolicyEnv) -> None:
    doc_id, doc = await _one_document(env, "patch-ok")
    operations = [
        {"op": "add", "path": "/extension", "value": [{"url": IS_ARCHIVED, "valueBoolean": True}]},
        {"op": "replace", "path": "/securityLabel/0/coding/0/code", "value": "R"},
    ]
    response = await env.client.patch(
        f"DocumentReference?{_identifier_query(doc)}",
        content=json.dumps(operations),
        headers={**env.headers("gp_martin"), **PATCH},
    )
    assert response.status_code == 200, response.text
    patched = response.json()
    assert patched["meta"]["versionId"] == "2"
    assert patched["securityLabel"][0]["coding"][0] == {"system": CONFIDENTIALITY, "code": "R"}
    archived = await env.client.get(
        "DocumentReference",
        params={"patient": "pat-001", "status": "current", "isArchived": "true"},
        headers=env.headers("gp_martin"),
    )
    assert doc_id in {e["resource"]["id"] for e in archived.json()["entry"]}
    deprecate = [{"op": "replace", "path": "/status", "value": "superseded"}]
    response = await env.client.patch(
        f"DocumentReference?{_identifier_query(doc)}",
        content=json.dumps(deprecate),
        headers={**env.headers("gp_martin"), **PATCH},
    )
    assert response.status_code == 200
    assert response.json()["status"] == "superseded"


@pytest.mark.parametrize(
    "operations",
    [
        [{"op": "replace", "path": "/type/coding/0/code", "value": "34133-9"}],
        [{"op": "add", "path": "/description", "value": "changed"}],
        [{"op": "remove", "path": "/content/0/attachment/hash"}],
        [
            {
                "op": "add",
                "path": "/extension",
                "value": [{"url": "http://example.org/x", "valueBoolean": True}],
            }
        ],
        [{"op": "move", "from": "/date", "path": "/description"}],
    ],
)
async def test_metadata_update_of_other_elements_is_405(env: PolicyEnv, operations: list[Any]) -> None:
    doc_id, doc = await _one_document(env, "patch-405")
    response = await env.client.patch(
        f"DocumentReference?{_identifier_query(doc)}",
        content=json.dumps(operations),
        headers={**env.headers("gp_martin"), **PATCH},
    )
    assert response.status_code == 405
    unchanged = (await env.client.get(f"DocumentReference/{doc_id}", headers=env.headers("gp_martin"))).json()
    assert unchanged["meta"]["versionId"] == "1"


async def test_metadata_update_by_a_caller_without_access_changes_nothing(env: PolicyEnv) -> None:
    doc_id, doc = await _one_document(env, "patch-denied")
    operations = [{"op": "replace", "path": "/status", "value": "superseded"}]
    for who in ("kine", "gp_nguyen"):
        response = await env.client.patch(
            f"DocumentReference?{_identifier_query(doc)}",
            content=json.dumps(operations),
            headers={**env.headers(who), **PATCH},
        )
        assert response.status_code in (403, 404)
    unchanged = (await env.client.get(f"DocumentReference/{doc_id}", headers=env.headers("gp_martin"))).json()
    assert unchanged["status"] == "current" and unchanged["meta"]["versionId"] == "1"


async def test_the_patient_masks_a_document_by_patch(env: PolicyEnv) -> None:
    doc_id, _ = await _one_document(env, "patch-mask")
    masked = {
        "coding": [
            {
                "system": "https://mos.esante.gouv.fr/NOS/TRE_A07-StatusVisibiliteDocument/FHIR/"
                "TRE-A07-StatusVisibiliteDocument",
                "code": "MASQUE_PS",
            }
        ]
    }
    response = await env.client.patch(
        f"DocumentReference/{doc_id}",
        content=json.dumps([{"op": "add", "path": "/securityLabel/-", "value": masked}]),
        headers={**env.patient("pat-001"), **PATCH},
    )
    assert response.status_code == 200, response.text
    hidden = await env.client.get(f"DocumentReference/{doc_id}", headers=env.headers("kine"))
    assert hidden.status_code in (403, 404)


async def test_patch_rejects_bad_bodies(env: PolicyEnv) -> None:
    doc_id, _ = await _one_document(env, "patch-bad")
    url = f"DocumentReference/{doc_id}"
    headers = {**env.headers("gp_martin"), **PATCH}
    assert (await env.client.patch(url, content="{}", headers=headers)).status_code == 422
    assert (await env.client.patch(url, content="not json", headers=headers)).status_code == 400
    bad_path = [{"op": "replace", "path": "/nothing/here", "value": 1}]
    assert (await env.client.patch(url, content=json.dumps(bad_path), headers=headers)).status_code == 422
    fhirpath = {**env.headers("gp_martin"), "Content-Type": "application/fhir+json"}
    assert (await env.client.patch(url, content="{}", headers=fhirpath)).status_code == 415
    stale = {**headers, "If-Match": 'W/"9"'}
    ok_ops = [{"op": "replace", "path": "/status", "value": "superseded"}]
    assert (await env.client.patch(url, content=json.dumps(ok_ops), headers=stale)).status_code == 412


# -- large documents ---------------------------------------------------------------------


async def test_a_20_mb_document_round_trips_through_the_content_store(env: PolicyEnv) -> None:
    content = os.urandom(20 * 1024 * 1024)
    bundle = provide_bundle(PATIENT, AUTHOR, [SourceDocument(content, title="Imagerie (DICOM KOS + PDF)")])
    response = await post(env, bundle)
    assert response.status_code == 200, response.text[:500]
    bin_id = locations(response)["Binary"][0]
    url = env.settings.mongodb_url
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, type_registry=TYPE_REGISTRY)
    try:
        db = client[env.settings.db]
        stored = await db["Binary"].find_one({"_id": bin_id})
        assert stored is not None and "data" not in stored["resource"]
        assert stored["_content"]["size"] == len(content)
        blob = await db["content.files"].find_one({"_id": stored["_content"]["id"]})
        assert blob is not None and blob["length"] == len(content)
    finally:
        await client.close()
    raw = await env.client.get(
        f"Binary/{bin_id}", headers={**env.headers("gp_martin"), "Accept": "application/pdf"}
    )
    assert raw.status_code == 200
    assert hashlib.sha256(raw.content).digest() == hashlib.sha256(content).digest()
    assert raw.headers["content-length"] == str(len(content))
    fhir = await env.client.get(f"Binary/{bin_id}", headers={**env.headers("gp_martin"), **FHIR_JSON})
    assert base64.b64decode(fhir.json()["data"]) == content
    refused = await env.client.get(
        f"Binary/{bin_id}", headers={**env.headers("kine"), "Accept": "application/pdf"}
    )
    assert refused.status_code in (403, 404)


async def test_samples_are_valid_provide_document_bundles(env: PolicyEnv) -> None:
    """Each sample submission set, re-sent as the transaction it is, is consistent."""
    samples = Path(__file__).resolve().parents[1] / "samples"
    path = samples / "10-ss-001-gp.json"
    bundle = json.loads(path.read_text())
    repo = await env.internal_repository()
    from dmp_fhir.mhd import Entry, check_provide_bundle

    entries = [
        Entry(i, e["resource"]["resourceType"], e["resource"]["id"], e["resource"])
        for i, e in enumerate(bundle["entry"])
    ]

    async def no_duplicates(token: str) -> list[str]:
        return []

    await check_provide_bundle(entries, repo.lookup, no_duplicates)
