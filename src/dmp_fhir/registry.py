"""The supported resource types: adding a type is one line in ``RESOURCE_TYPES``.

Routes, validation, storage collections and the CapabilityStatement are all derived from here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from typing import Any


@dataclass(frozen=True, slots=True)
class ResourceType:
    """What the server knows about one resource type."""

    name: str
    #: Clients may create/update/delete it (AuditEvent is written by the server only).
    client_writable: bool = True
    #: The server exposes ``$validate``-style history and search for it.
    searchable: bool = True
    documentation: str = ""
    #: Structured patient data (labs, dispensations, vaccinations…): the access policy treats
    #: each resource like a document of the DMP section the access matrix maps it to.
    clinical: bool = False

    @property
    def collection(self) -> str:
        return self.name

    @property
    def history_collection(self) -> str:
        return f"{self.name}_history"

    def model(self) -> Any:
        """The ``fhir.resources.R4B`` pydantic model class (imported lazily, then cached)."""
        return _model_for(self.name)


RESOURCE_TYPES: dict[str, ResourceType] = {
    rt.name: rt
    for rt in (
        ResourceType("Patient", documentation="The DMP holder, identified by the INS."),
        ResourceType("Practitioner", documentation="A professional, identified by RPPS or ADELI."),
        ResourceType("PractitionerRole", documentation="A professional's role: profession, place."),
        ResourceType("Organization", documentation="An establishment, identified by FINESS."),
        ResourceType("DocumentReference", documentation="A document's metadata (IHE MHD)."),
        ResourceType("Binary", searchable=False, documentation="A document's content."),
        ResourceType("List", documentation="An MHD submission set."),
        ResourceType("Consent", documentation="The patient's access decisions."),
        ResourceType("RelatedPerson", documentation="A minor's legal representative."),
        ResourceType("Observation", clinical=True, documentation="A laboratory result or a vital sign."),
        ResourceType(
            "DiagnosticReport", clinical=True, documentation="A laboratory report grouping its results."
        ),
        ResourceType("MedicationDispense", clinical=True, documentation="What a pharmacy dispensed."),
        ResourceType("MedicationStatement", clinical=True, documentation="A treatment the patient takes."),
        ResourceType("Immunization", clinical=True, documentation="A vaccination."),
        ResourceType("AllergyIntolerance", clinical=True, documentation="An allergy or intolerance."),
        ResourceType("Condition", clinical=True, documentation="A problem of the problem list."),
        ResourceType(
            "AuditEvent",
            client_writable=False,
            documentation="The access trail, written by the server only.",
        ),
    )
}

#: The structured patient-data types (``clinical``), read and written like documents.
CLINICAL_TYPES: frozenset[str] = frozenset(t.name for t in RESOURCE_TYPES.values() if t.clinical)

#: Canonical base of this server's OperationDefinitions (``$dmp-create`` …).
OPERATION_BASE = "https://dmp-fhir.example.org/fhir/OperationDefinition/"


@dataclass(frozen=True, slots=True)
class Operation:
    """A FHIR operation (``POST [type]/$name`` or ``POST [type]/[id]/$name``)."""

    name: str  # without the ``$``
    resource_type: str
    instance: bool
    documentation: str

    @property
    def definition(self) -> str:
        suffix = "" if self.resource_type == "Patient" else f"-{self.resource_type.lower()}"
        return f"{OPERATION_BASE}{self.name}{suffix}"

    @property
    def path(self) -> str:
        return (
            f"/{self.resource_type}/{{rid}}/${self.name}"
            if self.instance
            else f"/{self.resource_type}/${self.name}"
        )


#: The operations the server offers: routes and the CapabilityStatement come from here.
OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "dmp-create", "Patient", False, "Open a DMP from the INS identity, with the patient's consent."
    ),
    Operation(
        "dmp-access",
        "Patient",
        True,
        "The patient grants, revokes or blocks access; opposes emergency access.",
    ),
    Operation("dmp-close", "Patient", True, "The patient closes their DMP (kept for the retention period)."),
    Operation("dmp-reopen", "Patient", True, "A professional reopens a closed DMP at the patient's request."),
    Operation(
        "dmp-destroy", "Patient", True, "Destroy the whole DMP, irreversibly (minimal audit facts kept)."
    ),
    Operation(
        "dmp-destroy", "DocumentReference", True, "Destroy one document, all its versions and content."
    ),
    *(
        Operation("dmp-destroy", name, True, f"Destroy one {name} and all its versions.")
        for name in sorted(CLINICAL_TYPES)
    ),
)


@dataclass(frozen=True, slots=True)
class SearchParameter:
    name: str
    type: str  # token | string | uri
    description: str


@dataclass(frozen=True, slots=True)
class ConformanceType:
    """A read-only definition type the server serves from memory (loaded from ``profiles/``)."""

    name: str
    documentation: str
    search_params: tuple[SearchParameter, ...]
    #: Type and instance operations (name, canonical OperationDefinition).
    operations: tuple[tuple[str, str], ...] = ()


_CANONICAL_PARAMS = (
    SearchParameter("_id", "token", "Logical id"),
    SearchParameter("url", "uri", "Canonical URL (exact)"),
    SearchParameter("name", "string", "Computer-friendly name (case- and accent-insensitive prefix)"),
    SearchParameter("title", "string", "Human-friendly title (case- and accent-insensitive prefix)"),
    SearchParameter("status", "token", "draft | active | retired | unknown"),
    SearchParameter("version", "token", "Business version"),
)

CONFORMANCE_TYPES: dict[str, ConformanceType] = {
    ct.name: ct
    for ct in (
        ConformanceType(
            "StructureDefinition",
            "The DMP profiles this server enforces (read-only).",
            (*_CANONICAL_PARAMS, SearchParameter("type", "token", "The resource type profiled")),
        ),
        ConformanceType(
            "ValueSet",
            "The DMP value sets (read-only; $expand computes their expansion).",
            _CANONICAL_PARAMS,
            (("expand", "http://hl7.org/fhir/OperationDefinition/ValueSet-expand"),),
        ),
        ConformanceType("CodeSystem", "The project's own code systems (read-only).", _CANONICAL_PARAMS),
    )
}

#: The operation every registered resource type supports.
VALIDATE_OPERATION = ("validate", "http://hl7.org/fhir/OperationDefinition/Resource-validate")


def get_type(name: str) -> ResourceType | None:
    return RESOURCE_TYPES.get(name)


@cache
def _model_for(name: str) -> Any:
    module = importlib.import_module(f"fhir.resources.R4B.{name.lower()}")
    return getattr(module, name)


@cache
def any_model(name: str) -> Any | None:
    """The R4B model of any FHIR resource type (for contained/bundled resources), or None."""
    try:
        module = importlib.import_module(f"fhir.resources.R4B.{name.lower()}")
    except ImportError:
        return None
    model = getattr(module, name, None)
    return model if isinstance(model, type) else None
