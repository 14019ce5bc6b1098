"""Shared set-up for the access-policy tests: the samples, loaded once, behind real tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from pymongo.monitoring import CommandListener

from dmp_fhir.app import create_app
from dmp_fhir.auth.signing import load_or_create_dev_key, mint_token
from dmp_fhir.config import Settings
from dmp_fhir.loader import load_paths
from dmp_fhir.repository import Repository
from dmp_fhir.storage import Database, ResourceStore
from dmp_fhir.storage.disposable import disposable_name, drop_disposable

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
BASE = "http://testserver/fhir"

#: The sample professionals: (Practitioner id, profession, specialty, organization, extra claims)
PROFESSIONALS: dict[str, dict[str, Any]] = {
    "gp_martin": {
        "fhirUser": "Practitioner/pra-gp-martin",
        "profession": "10",
        "specialty": "SM54",
        "organization": "Organization/org-msp-aure",
        "rpps": "19999999001",
    },
    "gp_nguyen": {
        "fhirUser": "Practitioner/pra-gp-nguyen",
        "profession": "10",
        "specialty": "SM54",
        "organization": "Organization/org-msp-aure",
    },
    "gp_benali": {
        "fhirUser": "Practitioner/pra-gp-benali",
        "profession": "10",
        "specialty": "SM54",
        "organization": "Organization/org-msp-aure",
    },
    "cardio": {
        "fhirUser": "Practitioner/pra-cardio-roux",
        "profession": "10",
        "specialty": "SM04",
        "organization": "Organization/org-chu-bellerive",
    },
    "psy": {
        "fhirUser": "Practitioner/pra-psy-garnier",
        "profession": "10",
        "specialty": "SM42",
        "organization": "Organization/org-chu-bellerive",
    },
    "onco": {
        "fhirUser": "Practitioner/pra-onco-lambert",
        "profession": "10",
        "specialty": "SM36",
        "organization": "Organization/org-chu-bellerive",
    },
    "radio": {
        "fhirUser": "Practitioner/pra-radio-perrin",
        "profession": "10",
        "specialty": "SM44",
        "organization": "Organization/org-imagerie-tilleuls",
    },
    "urgences": {
        "fhirUser": "Practitioner/pra-urg-moreau",
        "profession": "10",
        "specialty": "SM59",
        "organization": "Organization/org-chu-urgences",
        "care_setting": "ER",
    },
    "samu": {
        "fhirUser": "Practitioner/pra-samu-faure",
        "profession": "10",
        "specialty": "SM59",
        "organization": "Organization/org-samu-99",
        "care_setting": "SAMU_SMUR",
    },
    "mdt": {
        "fhirUser": "Practitioner/pra-mdt-dubois",
        "profession": "10",
        "specialty": "SM25",
        "organization": "Organization/org-spst-aure",
    },
    "kine": {
        "fhirUser": "Practitioner/pra-kine-girard",
        "profession": "70",
        "organization": "Organization/org-cabinet-kine-pont",
    },
    "pharma": {
        "fhirUser": "Practitioner/pra-pharm-lemoine",
        "profession": "21",
        "organization": "Organization/org-pharmacie-halles",
    },
    "sf": {
        "fhirUser": "Practitioner/pra-sf-rousseau",
        "profession": "50",
        "organization": "Organization/org-cabinet-sf-aure",
    },
}


@dataclass
class PolicyEnv:
    app: FastAPI
    client: httpx.AsyncClient
    database: Database
    settings: Settings
    key: dict[str, Any]

    def token(self, claims: dict[str, Any], scope: str | None = None) -> str:
        claims = dict(claims)
        if scope is not None:
            claims["scope"] = scope
        elif "scope" not in claims:
            user = str(claims.get("fhirUser", ""))
            prefix = (
                "patient"
                if user.startswith(("Patient/", "RelatedPerson/"))
                else ("user" if user else "system")
            )
            claims["scope"] = f"{prefix}/*.cruds"
        return mint_token(
            claims, key=self.key, issuer=self.settings.issuer, audience=self.settings.token_audience
        )

    def headers(self, who: str | dict[str, Any], **extra: Any) -> dict[str, str]:
        claims = dict(PROFESSIONALS[who]) if isinstance(who, str) else dict(who)
        claims.update(extra)
        return {"Authorization": f"Bearer {self.token(claims)}"}

    def patient(self, pid: str, **extra: Any) -> dict[str, str]:
        return self.headers({"fhirUser": f"Patient/{pid}", "patient": pid, **extra})

    def representative(self, rp: str, pid: str) -> dict[str, str]:
        return self.headers({"fhirUser": f"RelatedPerson/{rp}", "patient": pid})

    def system(self, client_id: str = "annuaire") -> dict[str, str]:
        return self.headers({"client_id": client_id})

    async def internal_repository(self) -> Repository:
        """Unrestricted, and with the DMP profiles applied only when declared: the property
        tests store deliberately odd worlds (no category, two categories, unknown types…) to
        check that the policy holds even on data the profiles would refuse at the door."""
        settings = self.settings.model_copy(update={"profile_enforcement": "declared"})
        return Repository.internal(ResourceStore(self.database), settings, "tests")


async def policy_env(
    mongodb_url: str, tmp: Path, *, listeners: Sequence[CommandListener] = (), **overrides: Any
) -> AsyncIterator[PolicyEnv]:
    """The samples behind real tokens. The ITI-67 rule (a DocumentReference search names the
    patient and the status) is off unless asked for: the policy tests search in every shape,
    including unfocused ones, to prove the policy's filter holds even where that rule is off."""
    settings = Settings.model_validate(
        {
            "mongodb_url": mongodb_url,
            "db": disposable_name("test"),
            "base_url": BASE,
            "dev_mode": True,
            "dev_key_file": tmp / "dev-key.json",
            "require_iti67_parameters": False,
            **overrides,
        }
    )
    database = Database(mongodb_url, settings.db, listeners=listeners)
    app = create_app(settings, database)
    async with app.router.lifespan_context(app):
        await load_paths(Repository.internal(ResourceStore(database), settings, "tests"), [SAMPLES])
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            yield PolicyEnv(app, client, database, settings, load_or_create_dev_key(settings.dev_key_file))
    await drop_disposable(database.client, settings.db)
    await database.close()
