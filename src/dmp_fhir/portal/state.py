"""What the portal keeps for the app's lifetime: templates, the cookie codec, the OIDC client."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from fastapi import Request
from fastapi.templating import Jinja2Templates

from ..config import Settings
from ..policy.matrix import AccessMatrix
from .oidc import OidcClient
from .session import Codec

HERE = Path(__file__).resolve().parent
REPOSITORY_SAMPLES = HERE.parents[2] / "samples"


@dataclass
class Portal:
    settings: Settings
    matrix: AccessMatrix
    templates: Jinja2Templates
    codec: Codec
    oidc: OidcClient


def build_portal(settings: Settings, matrix: AccessMatrix) -> Portal:
    templates = Jinja2Templates(directory=HERE / "templates")  # autoescaping on
    return Portal(settings, matrix, templates, Codec(settings.portal_session_key), OidcClient(settings))


def portal_of(request: Request) -> Portal:
    portal: Portal = request.app.state.portal
    return portal


@dataclass(frozen=True)
class SamplePerson:
    value: str  # the sign-in form's choice
    label: str


def sample_people(settings: Settings) -> tuple[list[SamplePerson], list[SamplePerson]]:
    """Development sign-in: the patients and legal representatives of the sample files."""
    return _people(settings.portal_samples_dir or REPOSITORY_SAMPLES)


@cache
def _people(directory: Path) -> tuple[list[SamplePerson], list[SamplePerson]]:
    resources = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            bundle = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        resources += [e.get("resource") or {} for e in bundle.get("entry") or [] if isinstance(e, dict)]
    names = {}
    patients, representatives = [], []
    for r in resources:
        if r.get("resourceType") == "Patient":
            name = (r.get("name") or [{}])[0]
            names[r["id"]] = f"{' '.join(name.get('given') or [])} {name.get('family', '')}".strip()
            patients.append(SamplePerson(f"patient:{r['id']}", f"{names[r['id']]} ({r['id']})"))
    for r in resources:
        if r.get("resourceType") == "RelatedPerson":
            pid = str((r.get("patient") or {}).get("reference", "")).removeprefix("Patient/")
            name = (r.get("name") or [{}])[0]
            who = f"{' '.join(name.get('given') or [])} {name.get('family', '')}".strip()
            representatives.append(
                SamplePerson(
                    f"representant:{r['id']}:{pid}", f"{who}, pour {names.get(pid, pid)} ({r['id']})"
                )
            )
    return patients, representatives
