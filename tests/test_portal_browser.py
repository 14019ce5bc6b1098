"""The patient portal in a real browser: Playwright drives Debian's Chromium against a live
server holding the samples. Each flow the issue names, as the patient (Julien ROBIN, pat-002)
and as a legal representative (Léa FONTAINE's mother, pat-020); every page is checked with
axe-core (no serious or critical violation) and for CSP violations, and screenshotted
(desktop and phone width) under tests/artifacts/ for review."""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .live_server import LiveServer, live_server
from .portal_browser import Api, Browser, chromium, load_samples, open_browser, skip_without_chromium

__all__ = ["chromium"]  # a fixture this module uses

TRE_A05 = "https://mos.esante.gouv.fr/NOS/TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire"
TRE_A03 = "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument"
TRE_A11 = "https://mos.esante.gouv.fr/NOS/TRE_A11-IheFormatCode/FHIR/TRE-A11-IheFormatCode"


@pytest.fixture(scope="module")
def server(mongodb_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    skip_without_chromium()
    with live_server(mongodb_url, tmp_path_factory.mktemp("portal")) as live:
        load_samples(mongodb_url, live)
        yield live


@pytest.fixture(scope="module")
def patient(chromium: Any, server: LiveServer) -> Iterator[Browser]:
    yield from open_browser(chromium, server, "patient")


@pytest.fixture(scope="module")
def representative(chromium: Any, server: LiveServer) -> Iterator[Browser]:
    yield from open_browser(chromium, server, "representant")


@pytest.fixture(scope="module")
def api(server: LiveServer) -> Api:
    return Api(server)


# --------------------------------------------------------------------------- the patient


def test_patient_signs_in_and_sees_the_record(patient: Browser) -> None:
    patient.sign_in("patient:pat-002")
    page = patient.page
    assert page.locator("h1").inner_text() == "Mon dossier"
    ids = sorted(page.locator("li.document").evaluate_all("items => items.map(i => i.dataset.id)"))
    assert ids == ["doc-002-irm", "doc-002-kine-bilan", "doc-002-presc-kine", "doc-002-psy"]
    assert page.get_by_text("Julien ROBIN").count() >= 1
    assert page.locator("li[data-id='doc-002-psy'] .badge").inner_text() == "Masqué aux professionnels"
    patient.check("dossier")
    # keyboard: the first Tab reaches the skip link, which moves to the content
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Aller au contenu"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "contenu"


def test_patient_reads_a_document(patient: Browser) -> None:
    patient.goto("/portal/dossier")
    patient.page.locator("li[data-id='doc-002-kine-bilan'] h3 a").click()
    patient.page.wait_for_url("**/portal/documents/doc-002-kine-bilan")
    assert patient.page.locator("pre.text").inner_text().strip()  # the report's text, shown on the page
    patient.check("document-texte")
    with patient.page.expect_download() as download:
        patient.page.get_by_role("link", name="Télécharger").click()
    assert download.value.suggested_filename == "doc-002-kine-bilan.txt"


def test_patient_masks_a_document(patient: Browser, api: Api) -> None:
    assert api.finds("kine", "pat-002", "doc-002-presc-kine")
    patient.goto("/portal/documents/doc-002-presc-kine")
    assert "médecin traitant" in patient.page.locator("#t-masquage + p").inner_text()
    patient.check("document")
    patient.page.get_by_role("button", name="Masquer ce document").click()
    patient.page.wait_for_url("**message=masque")
    assert "masqué" in patient.notice()
    assert not api.finds("kine", "pat-002", "doc-002-presc-kine")  # the physiotherapist no longer finds it
    assert api.finds("gp_nguyen", "pat-002", "doc-002-presc-kine")  # the médecin traitant still does
    patient.check("document-masque")


def test_patient_blocks_a_professional(patient: Browser, api: Api) -> None:
    assert api.search("kine", "pat-002").status_code == 200
    patient.goto("/portal/acces")
    assert "Hugo GIRARD" in patient.page.locator("section[aria-labelledby='t-autorises']").inner_text()
    patient.check("acces")
    patient.page.fill("#recherche", "GIRARD")
    patient.page.get_by_role("button", name="Rechercher").click()
    patient.page.get_by_role("button", name="Bloquer Hugo GIRARD").click()
    patient.page.wait_for_url("**message=block")
    assert "bloqué" in patient.notice()
    assert "Hugo GIRARD" in patient.page.locator("section[aria-labelledby='t-bloques']").inner_text()
    assert api.search("kine", "pat-002").status_code == 403
    patient.check("acces-bloque")


def test_patient_reads_the_access_history(patient: Browser, api: Api) -> None:
    emergency = api.search("urgences", "pat-002", purpose_of_use="ETREAT")
    assert emergency.status_code == 200
    patient.goto("/portal/historique")
    rows = patient.page.locator("section[aria-labelledby='t-tous'] li.event")
    kine_rows = [text for text in rows.all_inner_texts() if "Hugo GIRARD" in text]
    assert any("a recherché : documents" in text and "Autorisé" in text for text in kine_rows), kine_rows
    assert any("Refusé" in text for text in kine_rows)  # the search refused once blocked
    urgent = patient.page.locator("section[aria-labelledby='t-urgences'] li.event.emergency")
    assert urgent.count() >= 1 and "Julie MOREAU" in urgent.first.inner_text()
    patient.check("historique")
    patient.page.get_by_role("link", name="N'afficher que les professionnels").click()
    shown = patient.page.locator("section[aria-labelledby='t-tous'] li.event").all_inner_texts()
    assert shown and not any("Vous" in text for text in shown)
    assert any("Hugo GIRARD" in text for text in shown) and any("Julie MOREAU" in text for text in shown)
    patient.check("historique-professionnels")


def test_patient_closes_the_record(patient: Browser, api: Api) -> None:
    patient.goto("/portal/fermer")
    patient.check("fermer")
    patient.page.get_by_label("Je confirme vouloir fermer mon DMP.").check()
    patient.page.get_by_role("button", name="Fermer le DMP").click()
    assert patient.page.locator("h1").inner_text() == "Le DMP est fermé"
    assert api.search("gp_nguyen", "pat-002").status_code == 403
    patient.goto("/portal/dossier")
    assert patient.page.locator("li.document").count() == 4  # the patient still reads
    patient.check("ferme")


# --------------------------------------------------------------------------- a minor's record


def prescription(pid: str, author: str) -> dict[str, Any]:
    content = "Prescription : 10 séances de kinésithérapie (rééducation de la cheville).".encode()
    return {
        "resourceType": "DocumentReference",
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
        "status": "current",
        "type": {"coding": [{"system": TRE_A05, "code": "PRESC-KINE"}]},
        "category": [{"coding": [{"system": TRE_A03, "code": "42"}]}],
        "subject": {"reference": f"Patient/{pid}"},
        "date": "2025-03-02T09:30:00+01:00",
        "author": [{"reference": author}],
        "securityLabel": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}]}
        ],
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain",
                    "data": base64.b64encode(content).decode(),
                    "size": len(content),
                    "hash": base64.b64encode(hashlib.sha1(content).digest()).decode(),
                    "title": "Prescription de kinésithérapie",
                },
                "format": {"system": TRE_A11, "code": "urn:ihe:iti:xds-sd:text:2008"},
            }
        ],
    }


@pytest.fixture(scope="module")
def minors_document(server: LiveServer, api: Api) -> str:
    response = httpx.post(
        f"{server.base_url}/DocumentReference",
        json=prescription("pat-020", "PractitionerRole/prr-gp-benali"),
        headers={**api.headers("gp_benali"), "Content-Type": "application/fhir+json"},
        timeout=60,
    )
    assert response.status_code == 201, response.text
    doc_id: str = response.json()["id"]
    return doc_id


def test_representative_signs_in_to_the_minors_record(representative: Browser, minors_document: str) -> None:
    representative.sign_in("representant:rp-020-mere:pat-020")
    page = representative.page
    assert "représentant légal" in page.locator(".holder").inner_text()
    assert "Léa FONTAINE" in page.locator(".holder").inner_text()
    ids = page.locator("li.document").evaluate_all("items => items.map(i => i.dataset.id)")
    assert ids == [minors_document]  # not doc-020-contraception (hidden from representatives)
    representative.check("dossier")


def test_representative_authorises_then_masks(
    representative: Browser, api: Api, minors_document: str
) -> None:
    assert api.search("kine", "pat-020").status_code == 403  # not authorised yet
    representative.goto("/portal/acces")
    representative.page.fill("#recherche", "GIRARD")
    representative.page.get_by_role("button", name="Rechercher").click()
    representative.check("acces-recherche")
    representative.page.get_by_role("button", name="Autoriser Hugo GIRARD").click()
    representative.page.wait_for_url("**message=grant")
    assert api.finds("kine", "pat-020", minors_document)
    representative.goto(f"/portal/documents/{minors_document}")
    assert "10 séances de kinésithérapie" in representative.page.locator("pre.text").inner_text()
    assert "son médecin traitant" in representative.page.locator("#t-masquage + p").inner_text()
    representative.check("document")
    representative.page.get_by_role("button", name="Masquer ce document").click()
    representative.page.wait_for_url("**message=masque")
    assert not api.finds("kine", "pat-020", minors_document)
    assert api.finds("gp_benali", "pat-020", minors_document)


def test_representative_blocks_a_professional(representative: Browser, api: Api) -> None:
    representative.goto("/portal/acces")
    representative.page.fill("#recherche", "GIRARD")
    representative.page.get_by_role("button", name="Rechercher").click()
    representative.page.get_by_role("button", name="Bloquer Hugo GIRARD").click()
    representative.page.wait_for_url("**message=block")
    assert api.search("kine", "pat-020").status_code == 403
    representative.check("acces-bloque")


def test_representative_reads_the_access_history(representative: Browser) -> None:
    representative.goto("/portal/historique")
    rows = representative.page.locator("section[aria-labelledby='t-tous'] li.event").all_inner_texts()
    assert any("Hugo GIRARD" in r and "a recherché : documents" in r and "Autorisé" in r for r in rows), rows
    assert any("Vous" in r and "a modifié les autorisations" in r for r in rows)  # the grant and the block
    representative.check("historique")


def test_representative_closes_the_record(representative: Browser, api: Api) -> None:
    representative.goto("/portal/fermer")
    representative.page.get_by_label("Je confirme vouloir fermer le dossier de Léa FONTAINE.").check()
    representative.page.get_by_role("button", name="Fermer le DMP").click()
    assert representative.page.locator("h1").inner_text() == "Le DMP est fermé"
    assert api.search("gp_benali", "pat-020").status_code == 403
    representative.check("ferme")
