"""Issue 17: the deployment files, checked without Docker (none on the build machines).

docker-compose.yml: the services and their healthchecks, MongoDB unpublished, images pinned,
the server wired to the realm Keycloak imports; Dockerfile: pinned base, hash-checked lock file,
non-root, HEALTHCHECK; .dockerignore keeps the virtualenv and caches out of the build context;
requirements.lock pins every runtime dependency of pyproject.toml, with hashes.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
EXACT_IMAGE = re.compile(
    r"^[\w./-]+:\d+\.\d+\.\d+(?:-[\w.-]+)?(?:@sha256:[0-9a-f]{64})?$|^[\w./-]+@sha256:[0-9a-f]{64}$"
)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


@pytest.fixture(scope="module")
def realm() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ROOT / "deploy/keycloak/dmp-realm.json").read_text())
    return data


def test_services_and_healthchecks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"mongodb", "keycloak", "samples", "dmp-fhir"}
    for name in ("mongodb", "keycloak", "dmp-fhir"):  # the long-running ones
        check = services[name]["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL") and check["retries"] >= 3, name
    server = services["dmp-fhir"]
    assert server["depends_on"] == {
        "mongodb": {"condition": "service_healthy"},
        "keycloak": {"condition": "service_healthy"},
        "samples": {"condition": "service_completed_successfully"},
    }
    assert services["samples"]["command"][-2:] == ["load", "samples/"]
    assert "/fhir/_health" in " ".join(server["healthcheck"]["test"])


def test_mongodb_healthcheck_waits_for_a_primary(compose: dict[str, Any]) -> None:
    mongodb = compose["services"]["mongodb"]
    script = mongodb["healthcheck"]["test"][-1]
    assert "rs.initiate(" in script
    # The exit status decides: printing `false` would still exit 0.
    assert "quit(db.hello().isWritablePrimary ? 0 : 1)" in script
    assert "--replSet" in mongodb["command"]


def test_no_database_port_is_published(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "ports" not in services["mongodb"] and "expose" not in services["mongodb"]
    for name, service in services.items():
        for mapping in service.get("ports", []):
            assert str(mapping).startswith("127.0.0.1:"), f"{name} publishes {mapping} on every interface"
            assert "27017" not in str(mapping)


def test_images_are_pinned_to_exact_versions(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        assert EXACT_IMAGE.match(service["image"]), f"{name}: {service['image']} is not an exact version"
    base = re.search(r"^FROM\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert base is not None and EXACT_IMAGE.match(base.group(1)), base


def test_server_trusts_the_imported_realm(compose: dict[str, Any], realm: dict[str, Any]) -> None:
    keycloak = compose["services"]["keycloak"]
    assert (
        "./deploy/keycloak/dmp-realm.json:/opt/keycloak/data/import/dmp-realm.json:ro" in keycloak["volumes"]
    )
    assert "--import-realm" in keycloak["command"]
    env = compose["services"]["dmp-fhir"]["environment"]
    hostname = keycloak["environment"]["KC_HOSTNAME"]
    assert env["DMP_FHIR_ISSUER"] == f"{hostname}/realms/{realm['realm']}"
    assert (
        env["DMP_FHIR_JWKS_URL"]
        == f"http://keycloak:8080/realms/{realm['realm']}/protocol/openid-connect/certs"
    )
    audiences = {
        m["config"]["included.custom.audience"]
        for scope in realm["clientScopes"]
        for m in scope.get("protocolMappers", [])
        if m["protocolMapper"] == "oidc-audience-mapper" and scope["name"] == "dmp-fhir-audience"
    }
    assert audiences == {env["DMP_FHIR_AUDIENCE"]}
    assert "DMP_FHIR_DEV_MODE" not in env  # development tokens stay refused


def test_realm_clients(realm: dict[str, Any]) -> None:
    clients = {c["clientId"]: c for c in realm["clients"]}
    portal = clients["dmp-patient-portal"]
    assert (
        portal["publicClient"] and portal["standardFlowEnabled"] and not portal["directAccessGrantsEnabled"]
    )
    assert portal["attributes"]["pkce.code.challenge.method"] == "S256"
    system = clients["dmp-system-chu"]
    assert system["serviceAccountsEnabled"] and not system["standardFlowEnabled"]
    claims = {m["config"]["claim.name"]: m["config"]["claim.value"] for m in system["protocolMappers"]}
    assert claims["finess"] == "990010019"


def test_dockerfile_hardening() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "pip install --require-hashes --no-deps -r requirements.lock" in text
    user = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK ", text, re.MULTILINE)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".cache", ".git"} <= set(ignored)


def test_lock_file_pins_every_runtime_dependency_with_hashes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lock = (ROOT / "requirements.lock").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", lock, re.MULTILINE))
    normalise = {re.sub(r"[-_.]+", "-", k).lower(): v for k, v in pins.items()}
    for spec in project["dependencies"]:
        requirement = Requirement(spec)
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        assert name in normalise, f"{name} is not in requirements.lock: run pip-compile again (README)"
        assert requirement.specifier.contains(normalise[name]), (
            f"{name}=={normalise[name]} does not meet {spec}"
        )
    entries = re.split(r"\n(?=[A-Za-z0-9])", lock.split("\n\n", 1)[-1].strip())
    assert all("--hash=sha256:" in entry for entry in entries if "==" in entry)


def test_server_environment_names_real_settings(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every variable compose gives the server is a setting (a misspelt one would be ignored)."""
    from dmp_fhir.config import Settings

    env = compose["services"]["dmp-fhir"]["environment"]
    for name, value in env.items():
        if name != "MONGODB_URL":
            assert name.startswith("DMP_FHIR_") and name[9:].lower() in Settings.model_fields, name
        monkeypatch.setenv(name, str(value))
    settings = Settings()
    assert settings.jwks_url == env["DMP_FHIR_JWKS_URL"] and not settings.dev_mode
    assert settings.portal_oidc_client_id == "dmp-patient-portal"
