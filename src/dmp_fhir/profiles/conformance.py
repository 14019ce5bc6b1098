"""The server's conformance resources (``profiles/``), loaded once, and the profile check.

A DMP profile may derive from an FR Core profile (``profiles/fr-core/``: a local statement of the
FR Core constraints this server enforces, under FR Core's canonical URL): a resource is checked
against its profile's whole chain, and an issue names the profile that states the rule. Those
parents are never chosen on their own — not by ``meta.profile``, not by ``$validate`` — nor
listed in the CapabilityStatement: they are not the FR Core package, only the part of it that
is checked here.

Which profiles a resource is checked against (``profiles_for``):
- every DMP profile its ``meta.profile`` names (other profiles, e.g. IHE MHD's, are not ours to
  check and are ignored);
- in ``all`` mode (production), when it names none of ours, the default profile of its type —
  for a Consent, the creation profile when its category says ``CREATION_DMP``, else the access one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from ..errors import Issue, Unprocessable
from ..registry import CONFORMANCE_TYPES
from .structure import Profile, check, compile_profile
from .terminology import ConformanceError, Terminology

DEFAULT_DIR = Path(__file__).resolve().parents[3] / "profiles"
CANONICAL_BASE = "https://dmp-fhir.example.org/fhir"
CONSENT_CATEGORY = f"{CANONICAL_BASE}/CodeSystem/dmp-consent-category"

#: The profile every resource of a type must meet (``all`` mode), by StructureDefinition id.
DEFAULT_PROFILES = {
    "Patient": "dmp-patient",
    "Practitioner": "dmp-practitioner",
    "Organization": "dmp-organization",
    "DocumentReference": "dmp-documentreference",
    "List": "dmp-submissionset",
    "Consent": "dmp-consent-access",
    "AuditEvent": "dmp-auditevent",
    "Observation": "dmp-observation",
    "DiagnosticReport": "dmp-diagnosticreport",
    "MedicationDispense": "dmp-medicationdispense",
    "MedicationStatement": "dmp-medicationstatement",
    "Immunization": "dmp-immunization",
    "AllergyIntolerance": "dmp-allergyintolerance",
    "Condition": "dmp-condition",
}
CREATION_CONSENT = "dmp-consent-creation"
FOLDER = "dmp-folder"
MHD_LIST_TYPES = "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes"
#: The Lists the DMP keeps: IHE MHD submission sets and folders (List.code, MHDlistTypes).
LIST_CODES = ("submissionset", "folder")

Enforcement = Literal["all", "declared"]


@dataclass(frozen=True, slots=True)
class Conformance:
    """Everything loaded from ``profiles/``: resources by type and id, compiled profiles."""

    resources: dict[str, dict[str, dict[str, Any]]]  # type → id → resource
    terminology: Terminology
    profiles: dict[str, Profile]  # url → profile

    def profile_url(self, sd_id: str) -> str:
        return str(self.resources["StructureDefinition"][sd_id]["url"])

    def default_profile(self, rtype: str) -> str | None:
        sd_id = DEFAULT_PROFILES.get(rtype)
        return self.profile_url(sd_id) if sd_id else None

    def profiles_of_type(self, rtype: str) -> list[str]:
        return sorted(url for url, p in self.profiles.items() if p.type == rtype and is_dmp(url))

    def dmp_profile(self, url: str) -> Profile | None:
        """One of the server's own profiles (never an FR Core parent alone)."""
        return self.profiles.get(url) if is_dmp(url) else None

    def chain(self, profile: Profile) -> list[Profile]:
        """The profile and its ancestors, nearest first (resolved and checked at load)."""
        out = [profile]
        while out[-1].parent is not None:
            out.append(self.profiles[out[-1].parent])
        return out

    def profiles_for(self, resource: dict[str, Any], mode: Enforcement) -> list[Profile]:
        declared = (resource.get("meta") or {}).get("profile") or []
        chosen = [p for url in declared if isinstance(url, str) and (p := self.dmp_profile(url)) is not None]
        if chosen or mode == "declared":
            return chosen
        sd_id = DEFAULT_PROFILES.get(str(resource.get("resourceType")))
        if sd_id is None:
            return []
        if sd_id == "dmp-consent-access" and _is_creation_consent(resource):
            sd_id = CREATION_CONSENT
        if sd_id == "dmp-submissionset" and _list_kind(resource) == "folder":
            sd_id = FOLDER
        return [self.profiles[self.profile_url(sd_id)]]

    def validate(self, resource: dict[str, Any], profiles: Iterable[Profile]) -> list[Issue]:
        """Every rule of the profiles and of their ancestors (each profile checked once)."""
        issues: list[Issue] = []
        rtype = resource.get("resourceType")
        seen: set[str] = set()
        for profile in (p for chosen in profiles for p in self.chain(chosen)):
            if profile.url in seen:
                continue
            seen.add(profile.url)
            if profile.type != rtype:
                issues.append(
                    Issue(
                        "invalid",
                        f"{rtype} cannot conform to {profile.url}, a profile of {profile.type}.",
                        expression=(f"{rtype}.meta.profile",),
                    )
                )
                continue
            issues += check(resource, profile, self.terminology)
        return issues

    def enforce(self, resource: dict[str, Any], mode: Enforcement) -> None:
        """Raise 422 with every violation of the profiles that apply to ``resource``."""
        profiles = self.profiles_for(resource, mode)
        if resource.get("resourceType") == "List" and _list_kind(resource) is None and mode == "all":
            raise Unprocessable(
                "A List in the DMP is an IHE MHD submission set or folder: List.code must be "
                f"{MHD_LIST_TYPES}#submissionset or #folder.",
                code="code-invalid",
                expression=("List.code",),
            )
        issues = self.validate(resource, profiles)
        if issues:
            raise Unprocessable(
                f"{resource.get('resourceType')} breaks its DMP profile: {issues[0].diagnostics}",
                issues=issues[:100],
            )


def is_dmp(url: str) -> bool:
    return url.startswith(f"{CANONICAL_BASE}/")


def _check_chains(profiles: dict[str, Profile]) -> None:
    """Every parent is loaded, of the same type, and no chain loops."""
    for profile in profiles.values():
        seen = {profile.url}
        current = profile
        while current.parent is not None:
            parent = profiles.get(current.parent)
            if parent is None:
                raise ConformanceError(
                    f"StructureDefinition {current.url}: its baseDefinition {current.parent} is not loaded."
                )
            if parent.type != current.type:
                raise ConformanceError(
                    f"StructureDefinition {current.url}: its baseDefinition {parent.url} is a {parent.type}."
                )
            if parent.url in seen:
                raise ConformanceError(f"StructureDefinition {profile.url}: its baseDefinition chain loops.")
            seen.add(parent.url)
            current = parent


def _list_kind(resource: dict[str, Any]) -> str | None:
    code = resource.get("code")
    for coding in (code.get("coding") or []) if isinstance(code, dict) else []:
        if (
            isinstance(coding, dict)
            and coding.get("system") == MHD_LIST_TYPES
            and coding.get("code") in LIST_CODES
        ):
            return str(coding["code"])
    return None


def _is_creation_consent(resource: dict[str, Any]) -> bool:
    return any(
        coding.get("system") == CONSENT_CATEGORY and coding.get("code") == "CREATION_DMP"
        for concept in resource.get("category") or []
        if isinstance(concept, dict)
        for coding in concept.get("coding") or []
        if isinstance(coding, dict)
    )


def load_conformance(directory: Path = DEFAULT_DIR) -> Conformance:
    """Read every StructureDefinition/CodeSystem/ValueSet JSON file under ``directory``.

    Fails (ConformanceError) on a duplicate id or url, a value set that cannot be expanded
    locally, or a profile construct the validator does not check.
    """
    resources: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in CONFORMANCE_TYPES}
    urls: set[str] = set()
    for path in sorted(directory.rglob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        rtype = data.get("resourceType") if isinstance(data, dict) else None
        if rtype not in CONFORMANCE_TYPES:
            continue  # e.g. access-matrix.json
        rid, url = data.get("id"), data.get("url")
        if not isinstance(rid, str) or not isinstance(url, str):
            raise ConformanceError(f"{path}: a conformance resource needs an id and a url.")
        if rid in resources[rtype] or url in urls:
            raise ConformanceError(f"{path}: duplicate {rtype} id '{rid}' or url '{url}'.")
        urls.add(url)
        resources[rtype][rid] = data
    terminology = Terminology(resources["CodeSystem"].values(), resources["ValueSet"].values())
    profiles = {
        str(sd["url"]): compile_profile(sd, terminology) for sd in resources["StructureDefinition"].values()
    }
    _check_chains(profiles)
    conformance = Conformance(resources, terminology, profiles)
    for rtype, sd_id in (*DEFAULT_PROFILES.items(), ("Consent", CREATION_CONSENT)):
        if sd_id not in resources["StructureDefinition"]:
            raise ConformanceError(f"The default profile '{sd_id}' of {rtype} is missing from {directory}.")
    return conformance


@cache
def default_conformance() -> Conformance:
    """The conformance resources shipped in ``profiles/`` (loaded once per process)."""
    return load_conformance()
