"""``dmp-fhir token``: the printed token is accepted by a development-mode verifier."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dmp_fhir.auth.caller import Caller
from dmp_fhir.auth.tokens import TokenVerifier
from dmp_fhir.cli import main
from dmp_fhir.config import Settings, get_settings

BASE = "http://testserver/fhir"


@pytest.fixture
def dev_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    key_file = tmp_path / "keys" / "dev.json"
    monkeypatch.setenv("DMP_FHIR_DEV_KEY_FILE", str(key_file))
    monkeypatch.setenv("DMP_FHIR_BASE_URL", BASE)
    monkeypatch.delenv("DMP_FHIR_AUDIENCE", raising=False)
    monkeypatch.delenv("DMP_FHIR_ISSUER", raising=False)
    get_settings.cache_clear()
    yield key_file
    get_settings.cache_clear()


def run(argv: list[str], capsys: pytest.CaptureFixture[str], key_file: Path) -> Caller:
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "DMP_FHIR_DEV_MODE=true" in err
    verifier = TokenVerifier(
        Settings.model_validate({"base_url": BASE, "dev_mode": True, "dev_key_file": key_file})
    )
    return verifier.verify(f"Bearer {out.strip()}")


def test_patient_token(dev_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    caller = run(["token", "--patient", "pat-001"], capsys, dev_env)
    assert (caller.kind, caller.subject, caller.patient) == ("patient", "Patient/pat-001", "pat-001")
    assert caller.scopes.allows("patient", "DocumentReference", "c")
    assert dev_env.stat().st_mode & 0o777 == 0o600


def test_practitioner_token(dev_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    caller = run(
        [
            "token",
            "--practitioner",
            "pra-1",
            "--profession",
            "10",
            "--specialty",
            "SM54",
            "--rpps",
            "10001234567",
            "--organization",
            "org-1",
            "--finess",
            "750712184",
            "--care-setting",
            "SAMU_SMUR",
            "--purpose",
            "ETREAT",
            "--scope",
            "user/*.rs",
            "--claim",
            "organization_sector=SA07",
            "--lifetime",
            "60",
        ],
        capsys,
        dev_env,
    )
    assert caller.practitioner_id == "pra-1" and caller.organization == "Organization/org-1"
    assert caller.wants_emergency_access and caller.organization_sector == "SA07"
    assert caller.scopes.allows("user", "Patient", "r") and not caller.scopes.allows("user", "Patient", "c")


def test_related_person_and_system(dev_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rp = run(["token", "--related-person", "rp-1", "--for-patient", "minor-1"], capsys, dev_env)
    assert (rp.kind, rp.patient) == ("related-person", "minor-1")
    system = run(["token", "--system", "batch-1"], capsys, dev_env)
    assert (system.kind, system.subject) == ("system", "batch-1")
    assert system.scopes.allows("system", "Binary", "c")
    hospital = run(
        [
            "token",
            "--system",
            "dpi-chu",
            "--organization",
            "org-chu",
            "--finess",
            "990010019",
            "--on-behalf-of",
            "819999990047",
        ],
        capsys,
        dev_env,
    )
    assert (hospital.kind, hospital.organization, hospital.finess) == (
        "system",
        "Organization/org-chu",
        "990010019",
    )
    assert hospital.on_behalf_of == "819999990047"
    secret = run(["token", "--patient", "m", "--claim", "secret_connection:=true"], capsys, dev_env)
    assert secret.secret_connection


@pytest.mark.parametrize(
    "argv",
    [
        ["token"],
        ["token", "--practitioner", "x"],  # no profession
        ["token", "--related-person", "x"],  # no --for-patient
        ["token", "--patient", "a", "--profession", "10"],
        ["token", "--patient", "a", "--system", "b"],
        ["token", "--system", "b", "--on-behalf-of", "819999990047"],  # no organisation
        ["token", "--patient", "a", "--organization", "o"],
        ["token", "--patient", "a", "--claim", "novalue"],
        ["token", "--patient", "a", "--claim", "x:={bad json"],
    ],
)
def test_bad_options(dev_env: Path, argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2


def test_a_token_the_server_would_refuse(dev_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--patient", "../x"]) == 2
    assert "would refuse" in capsys.readouterr().err
    assert main(["token", "--patient", "a", "--lifetime", "-100", "--allow-invalid"]) == 0
    out, err = capsys.readouterr()
    assert out.count(".") == 2 and "expired" in err
