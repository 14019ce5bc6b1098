"""The DMP access rules on every read path, through HTTP with real tokens, on the samples.

One scenario per rule: who sees which sample document by read, search (and its total),
_include/_revinclude, history and Binary. Expected outcomes are written from the rules in the
README (and profiles/access-matrix.json), not computed by the policy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from .policy_env import PROFESSIONALS, PolicyEnv, policy_env

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def env(mongodb_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PolicyEnv]:
    async for e in policy_env(mongodb_url, Path(tmp_path_factory.mktemp("keys"))):
        yield e


async def doc_ids(env: PolicyEnv, headers: dict[str, str], patient: str, **params: str) -> set[str]:
    """Ids a caller finds with an MHD search on one patient (and checks that total agrees)."""
    response = await env.client.get(
        "/DocumentReference",
        headers=headers,
        params={"patient": patient, "_total": "accurate", "_count": "100", **params},
    )
    assert response.status_code == 200, response.text
    bundle = response.json()
    ids = {e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"}
    assert bundle["total"] == len(ids), "the total counts only what the caller may see"
    return ids


async def status_of(env: PolicyEnv, headers: dict[str, str], path: str) -> int:
    return (await env.client.get(path, headers=headers)).status_code


PAT002 = {"doc-002-psy", "doc-002-presc-kine", "doc-002-irm", "doc-002-kine-bilan"}


# -- authentication -------------------------------------------------------------------------


async def test_no_token_is_401_with_www_authenticate(env: PolicyEnv) -> None:
    response = await env.client.get("/Patient/pat-001")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["resourceType"] == "OperationOutcome"
    bad = await env.client.get("/Patient/pat-001", headers={"Authorization": "Bearer not.a.jwt"})
    assert bad.status_code == 401
    search = await env.client.get("/DocumentReference", params={"patient": "pat-001"})
    assert search.status_code == 401


async def test_metadata_and_health_need_no_token(env: PolicyEnv) -> None:
    assert (await env.client.get("/metadata")).status_code == 200
    assert (await env.client.get("/_health")).status_code == 200


# -- rule 3: the médecin traitant sees everything, masked documents too ------------------------


async def test_gp_sees_every_document_including_masked(env: PolicyEnv) -> None:
    gp = env.headers("gp_nguyen")
    assert await doc_ids(env, gp, "pat-002") == PAT002
    assert await status_of(env, gp, "/DocumentReference/doc-002-psy") == 200
    assert await status_of(env, gp, "/Patient/pat-002") == 200


async def test_gp_does_not_see_the_occupational_health_section(env: PolicyEnv) -> None:
    assert await doc_ids(env, env.headers("gp_benali"), "pat-006") == set()
    assert await status_of(env, env.headers("gp_benali"), "/DocumentReference/doc-006-sante-travail") == 404


# -- rule 3: consent + matrix + masking --------------------------------------------------------


async def test_physiotherapist_sees_only_the_matrix_types(env: PolicyEnv) -> None:
    kine = env.headers("kine")
    assert await doc_ids(env, kine, "pat-002") == {"doc-002-presc-kine", "doc-002-kine-bilan"}
    assert await status_of(env, kine, "/DocumentReference/doc-002-psy") == 404
    assert await status_of(env, kine, "/DocumentReference/doc-002-irm") == 404
    assert await status_of(env, kine, "/DocumentReference/doc-002-kine-bilan") == 200


async def test_consent_to_an_organisation_authorises_its_physicians_but_masking_holds(env: PolicyEnv) -> None:
    cardio = env.headers("cardio")  # CHU physician; pat-002 permits the CHU
    assert await doc_ids(env, cardio, "pat-002") == {
        "doc-002-presc-kine",
        "doc-002-irm",
        "doc-002-kine-bilan",
    }
    assert await status_of(env, cardio, "/DocumentReference/doc-002-psy") == 404


async def test_the_author_of_a_masked_document_still_sees_it(env: PolicyEnv) -> None:
    assert "doc-002-psy" in await doc_ids(env, env.headers("psy"), "pat-002")


async def test_author_without_consent_sees_only_their_own_documents(env: PolicyEnv) -> None:
    radio = env.headers("radio")  # no consent from pat-002, author of doc-002-irm
    assert await doc_ids(env, radio, "pat-002") == {"doc-002-irm"}
    assert await status_of(env, radio, "/DocumentReference/doc-002-irm") == 200
    assert await status_of(env, radio, "/DocumentReference/doc-002-presc-kine") == 403


async def test_not_authorised_professional_gets_403(env: PolicyEnv) -> None:
    pharma = env.headers("pharma")  # only pat-004 permits the pharmacy
    response = await env.client.get(
        "/DocumentReference", headers=env.headers("kine"), params={"patient": "pat-001", "status": "current"}
    )
    assert response.status_code == 403
    assert response.json()["issue"][0]["code"] == "forbidden"
    assert await status_of(env, pharma, "/Patient/pat-001") == 403
    assert await status_of(env, pharma, "/DocumentReference/doc-001-ordo") == 403


async def test_pharmacist_reads_treatments_not_imaging(env: PolicyEnv) -> None:
    assert await doc_ids(env, env.headers("pharma"), "pat-004") == {"doc-004-vac"}


async def test_occupational_physician_only_reads_the_occupational_section(env: PolicyEnv) -> None:
    assert await doc_ids(env, env.headers("mdt"), "pat-006") == {"doc-006-sante-travail"}


async def test_excluded_actors_never_access(env: PolicyEnv) -> None:
    employer_doctor = env.headers("cardio", actor_category="EMPLOYEUR")
    assert await status_of(env, employer_doctor, "/DocumentReference/doc-001-ldl") == 403
    insurer = env.headers("cardio", organization_sector="SA24")
    assert await status_of(env, insurer, "/Patient/pat-001") == 403
    response = await env.client.get(
        "/DocumentReference", headers=insurer, params={"patient": "pat-001", "status": "current"}
    )
    assert response.status_code == 403


async def test_blocked_professional_is_refused_even_as_emergency(env: PolicyEnv) -> None:
    nguyen = env.headers("gp_nguyen")  # pat-003 blocked Dr Nguyen
    assert await status_of(env, nguyen, "/Patient/pat-003") == 403
    assert await status_of(env, nguyen, "/DocumentReference/doc-003-mammo") == 403
    emergency = env.headers("gp_nguyen", purpose_of_use="ETREAT", care_setting="ER")
    assert await status_of(env, emergency, "/DocumentReference/doc-003-mammo") == 403


# -- rule 3: bris de glace ---------------------------------------------------------------------


async def test_break_glass_in_an_emergency_setting(env: PolicyEnv) -> None:
    plain = env.headers("urgences")
    assert await status_of(env, plain, "/DocumentReference/doc-002-irm") == 403
    glass = env.headers("urgences", purpose_of_use="ETREAT")
    assert await doc_ids(env, glass, "pat-002") == {"doc-002-presc-kine", "doc-002-irm", "doc-002-kine-bilan"}
    assert await status_of(env, glass, "/DocumentReference/doc-002-psy") == 404, "masked stays hidden"
    btg = env.headers("samu", purpose_of_use="BTG")
    assert await status_of(env, btg, "/Patient/pat-002") == 200


async def test_break_glass_refused_when_opposed_or_outside_emergency(env: PolicyEnv) -> None:
    glass = env.headers("urgences", purpose_of_use="ETREAT")
    assert await status_of(env, glass, "/DocumentReference/doc-008-cs") == 403  # pat-008 opposed
    not_er = env.headers("cardio", purpose_of_use="ETREAT")  # CHU physician, not in an ER
    assert await status_of(env, not_er, "/DocumentReference/doc-005-certif") == 403
    kine = env.headers("kine", purpose_of_use="ETREAT", care_setting="ER")  # not a physician
    assert await status_of(env, kine, "/DocumentReference/doc-005-certif") == 403


# -- rule 2: the patient and the legal representatives -----------------------------------------


async def test_patient_sees_all_but_invisible_documents(env: PolicyEnv) -> None:
    me = env.patient("pat-003")
    assert await doc_ids(env, me, "pat-003") == {"doc-003-mammo"}
    assert await status_of(env, me, "/DocumentReference/doc-003-rcp") == 404
    assert await status_of(env, env.headers("onco"), "/DocumentReference/doc-003-rcp") == 200
    assert await doc_ids(env, env.patient("pat-002"), "pat-002") == PAT002, "masked: the patient sees it"


async def test_patient_cannot_see_another_patients_record(env: PolicyEnv) -> None:
    me = env.patient("pat-003")
    assert await status_of(env, me, "/Patient/pat-002") == 403
    assert await status_of(env, me, "/DocumentReference/doc-002-irm") == 403
    response = await env.client.get(
        "/DocumentReference", headers=me, params={"patient": "pat-002", "status": "current"}
    )
    assert response.status_code == 403
    everything = await env.client.get("/DocumentReference", headers=me, params={"_count": "100"})
    assert {e["resource"]["subject"]["reference"] for e in everything.json().get("entry", [])} == {
        "Patient/pat-003"
    }


async def test_legal_representative_does_not_see_hidden_documents(env: PolicyEnv) -> None:
    parent = env.representative("rp-020-mere", "pat-020")
    assert await doc_ids(env, parent, "pat-020") == set()
    assert await status_of(env, parent, "/DocumentReference/doc-020-contraception") == 404
    assert await doc_ids(env, env.patient("pat-020"), "pat-020") == {"doc-020-contraception"}
    assert await status_of(env, parent, "/Patient/pat-020") == 200


# -- rule 5: denied looks like absent, on every path --------------------------------------------


async def test_include_and_revinclude_never_carry_hidden_documents(env: PolicyEnv) -> None:
    kine = env.headers("kine")
    response = await env.client.get(
        "/Patient", headers=kine, params={"_id": "pat-002", "_revinclude": "DocumentReference:subject"}
    )
    assert response.status_code == 200
    found = {(e["resource"]["resourceType"], e["resource"]["id"]) for e in response.json()["entry"]}
    assert found == {
        ("Patient", "pat-002"),
        ("DocumentReference", "doc-002-presc-kine"),
        ("DocumentReference", "doc-002-kine-bilan"),
    }
    lists = await env.client.get("/List", headers=kine, params={"patient": "pat-002"})
    assert lists.status_code == 200
    included = await env.client.get(
        "/DocumentReference",
        headers=env.headers("cardio"),
        params={"patient": "pat-002", "_include": "DocumentReference:subject"},
    )
    kinds = {e["resource"]["resourceType"] for e in included.json()["entry"]}
    assert kinds == {"DocumentReference", "Patient"}


async def test_history_and_vread_of_hidden_documents_are_404(env: PolicyEnv) -> None:
    kine = env.headers("kine")
    assert await status_of(env, kine, "/DocumentReference/doc-002-psy/_history") == 404
    assert await status_of(env, kine, "/DocumentReference/doc-002-psy/_history/1") == 404
    assert await status_of(env, kine, "/DocumentReference/doc-002-kine-bilan/_history/1") == 200
    history = await env.client.get("/DocumentReference/_history", headers=kine, params={"_count": "500"})
    ids = {e["resource"]["id"] for e in history.json().get("entry", [])}
    assert ids == {"doc-002-presc-kine", "doc-002-kine-bilan"}


async def test_binary_follows_its_document_reference(env: PolicyEnv) -> None:
    binary_of: dict[str, Any] = {}
    gp = env.headers("gp_nguyen")
    for doc in ("doc-002-psy", "doc-002-kine-bilan"):
        res = (await env.client.get(f"/DocumentReference/{doc}", headers=gp)).json()
        binary_of[doc] = res["content"][0]["attachment"]["url"]
    kine = env.headers("kine")
    assert await status_of(env, kine, "/" + binary_of["doc-002-kine-bilan"]) == 200
    assert await status_of(env, kine, "/" + binary_of["doc-002-psy"]) == 404
    assert await status_of(env, gp, "/" + binary_of["doc-002-psy"]) == 200
    assert await status_of(env, env.patient("pat-003"), "/" + binary_of["doc-002-psy"]) == 403


async def test_professionals_never_read_consents_or_the_audit_trail(env: PolicyEnv) -> None:
    gp = env.headers("gp_nguyen")
    assert await status_of(env, gp, "/Consent/consent-002-permit-kine") == 403
    response = await env.client.get("/Consent", headers=gp, params={"patient": "pat-002"})
    assert response.status_code == 200 and not response.json().get("entry")
    response = await env.client.get("/AuditEvent", headers=gp, params={"patient": "pat-002"})
    assert response.status_code == 200 and not response.json().get("entry")
    mine = await env.client.get("/Consent", headers=env.patient("pat-002"), params={"patient": "pat-002"})
    assert {e["resource"]["id"] for e in mine.json()["entry"]} == {
        "consent-002-permit-chu",
        "consent-002-permit-kine",
    }


async def test_directory_is_readable_by_any_authenticated_caller(env: PolicyEnv) -> None:
    for headers in (env.headers("kine"), env.patient("pat-001"), env.system()):
        assert await status_of(env, headers, "/Practitioner/pra-gp-martin") == 200
        assert await status_of(env, headers, "/Organization/org-chu-bellerive") == 200


async def test_system_clients_read_no_patient_data(env: PolicyEnv) -> None:
    system = env.system()
    assert await status_of(env, system, "/Patient/pat-001") == 403
    response = await env.client.get("/DocumentReference", headers=system, params={"status": "current"})
    assert response.status_code == 200 and not response.json().get("entry")


async def test_unfocused_search_is_filtered_in_the_query(env: PolicyEnv) -> None:
    """Without a patient, a professional finds exactly what the rules let them see."""
    response = await env.client.get(
        "/DocumentReference", headers=env.headers("kine"), params={"_total": "accurate", "_count": "3"}
    )
    bundle = response.json()
    assert bundle["total"] == 2
    ids = {e["resource"]["id"] for e in bundle["entry"]}
    assert ids == {"doc-002-presc-kine", "doc-002-kine-bilan"}
    patients = await env.client.get("/Patient", headers=env.headers("gp_benali"), params={"_count": "100"})
    assert {e["resource"]["id"] for e in patients.json()["entry"]} == {
        "pat-003",
        "pat-006",
        "pat-009",
        "pat-012",
        "pat-015",
        "pat-018",
        "pat-020",
    }


async def test_scopes_narrow_what_a_token_may_do(env: PolicyEnv) -> None:
    read_only = env.token(dict(PROFESSIONALS["gp_nguyen"]), scope="user/Patient.rs")
    headers = {"Authorization": f"Bearer {read_only}"}
    assert await status_of(env, headers, "/Patient/pat-002") == 200
    assert await status_of(env, headers, "/DocumentReference/doc-002-irm") == 403


async def test_batch_entries_follow_the_policy(env: PolicyEnv) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": "DocumentReference/doc-002-kine-bilan"}},
            {"request": {"method": "GET", "url": "DocumentReference/doc-002-psy"}},
            {"request": {"method": "GET", "url": "DocumentReference/doc-001-ordo"}},
            {"request": {"method": "GET", "url": "DocumentReference?patient=pat-002&_total=accurate"}},
        ],
    }
    response = await env.client.post(
        "", json=bundle, headers={**env.headers("kine"), "Content-Type": "application/fhir+json"}
    )
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    assert [e["response"]["status"] for e in entries] == [
        "200 OK",
        "404 Not Found",
        "403 Forbidden",
        "200 OK",
    ]
    search = entries[3]["resource"]
    assert {e["resource"]["id"] for e in search["entry"]} == {"doc-002-presc-kine", "doc-002-kine-bilan"}
    assert search["total"] == 2
    unauthenticated = await env.client.post("", json=bundle)
    assert unauthenticated.status_code == 401
