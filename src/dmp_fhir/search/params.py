"""The search-parameter registry, as data.

Each entry says which parameter exists on which resource type, its FHIR type, and where its values
live in the resource. ``extract.py`` reads these paths to fill the ``_s_*`` fields of the stored
document (``docs/storage.md``) and ``filters.py`` turns a query value into a condition on them, so
adding a parameter here is all it takes to make it searchable.

Path syntax (a deliberately tiny subset of FHIRPath, from the resource root, no type prefix):

- ``name.family``: dotted element names; arrays are flattened at every step.
- ``subject[Patient]``: only References whose target type is Patient (from the reference string,
  else ``Reference.type``; a purely logical reference — identifier, no reference — is kept).
- ``extension(URL).valueBoolean``: elements whose ``url`` equals URL; ``telecom(system=phone)``:
  elements whose ``system`` equals ``phone`` (the general form ``element(key=value)``).
- choice elements (``value[x]``) are written with their concrete names: ``deceasedBoolean``.
- ``deceasedDateTime.exists()``: ``true`` when the element is present. A token parameter with such a
  path that finds no value at all is indexed as ``false`` (FHIRPath ``exists() and != false``).

Definitions follow FHIR R4 (4.0.1) ``search-parameters.json``; French and IHE additions give
their own canonical URL. Where R4 shares one definition across resources (``clinical-patient``,
``individual-family``…) the shared URL is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..pdsm import IS_ARCHIVED_EXTS

ParamType = Literal[
    "token", "string", "date", "reference", "number", "uri", "quantity", "composite", "special"
]


@dataclass(frozen=True, slots=True)
class SearchParam:
    """One search parameter of one resource type."""

    name: str
    type: ParamType
    resource_type: str
    paths: tuple[str, ...]
    targets: tuple[str, ...] = ()  # reference targets; () = any type
    description: str = ""
    url: str = ""

    @property
    def field(self) -> str:
        """The top-level stored field that holds this parameter's values."""
        return field_name(self.name)


def field_name(name: str) -> str:
    """``_s_`` + the parameter name with ``-`` and ``.`` turned into ``_``; ``_id``/``_lastUpdated``
    map to the stored document's own ``_id`` and ``_lu``."""
    if name == "_id":
        return "_id"
    if name == "_lastUpdated":
        return "_lu"
    return "_s_" + name.replace("-", "_").replace(".", "_")


R4 = "http://hl7.org/fhir/SearchParameter/"
PDSM = "http://esante.gouv.fr/ci-sis/fhir/SearchParameter/"
MHD = "http://profiles.ihe.net/ITI/MHD/SearchParameter/"

# PDSm 3.x (interop.esante.gouv.fr) and the legacy CI-SIS URL: accept both (pdsm.py).
IS_ARCHIVED_PATHS = tuple(f"extension({u}).valueBoolean" for u in IS_ARCHIVED_EXTS)
# MHD 4.0.x (the PDSm base) published under http://, later versions under https://: accept both.
DESIGNATION_TYPE_EXTS = (
    "http://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-designationType",
    "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-designationType",
)
SOURCE_ID_EXTS = (
    "http://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-sourceId",
    "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-sourceId",
)

_ANY_PERSON = ("Practitioner", "Organization", "Device", "Patient", "PractitionerRole", "RelatedPerson")

# name, type, paths, targets, description, url   (resource type given by the section)
_Row = tuple[str, ParamType, tuple[str, ...], tuple[str, ...], str, str]

_COMMON: tuple[_Row, ...] = (
    ("_id", "token", ("id",), (), "Logical id of this artifact", R4 + "Resource-id"),
    ("_lastUpdated", "date", ("meta.lastUpdated",), (), "When the resource version last changed",
     R4 + "Resource-lastUpdated"),
    ("_tag", "token", ("meta.tag",), (), "Tags applied to this resource", R4 + "Resource-tag"),
    ("_security", "token", ("meta.security",), (), "Security Labels applied to this resource",
     R4 + "Resource-security"),
    ("_profile", "uri", ("meta.profile",), (), "Profiles this resource claims to conform to",
     R4 + "Resource-profile"),
)  # fmt: skip

_BY_TYPE: dict[str, tuple[_Row, ...]] = {
    "Patient": (
        ("identifier", "token", ("identifier",), (), "A patient identifier",
         R4 + "Patient-identifier"),
        ("family", "string", ("name.family",), (), "A portion of the family name of the patient",
         R4 + "individual-family"),
        ("given", "string", ("name.given",), (), "A portion of the given name of the patient",
         R4 + "individual-given"),
        ("name", "string", ("name",), (), "A server defined search that may match any of the "
         "string fields in the HumanName", R4 + "Patient-name"),
        ("birthdate", "date", ("birthDate",), (), "The patient's date of birth",
         R4 + "individual-birthdate"),
        ("gender", "token", ("gender",), (), "Gender of the patient", R4 + "individual-gender"),
        ("active", "token", ("active",), (), "Whether the patient record is active",
         R4 + "Patient-active"),
        ("general-practitioner", "reference", ("generalPractitioner",),
         ("Organization", "Practitioner", "PractitionerRole"),
         "Patient's nominated general practitioner", R4 + "Patient-general-practitioner"),
        ("address-postalcode", "string", ("address.postalCode",), (),
         "A postalCode specified in an address", R4 + "individual-address-postalcode"),
        ("address", "string", ("address",), (), "A server defined search that may match any of the "
         "string fields in the Address", R4 + "individual-address"),
        ("address-city", "string", ("address.city",), (), "A city specified in an address",
         R4 + "individual-address-city"),
        ("telecom", "token", ("telecom",), (),
         "The value in any kind of telecom details of the patient", R4 + "individual-telecom"),
        ("phone", "token", ("telecom(system=phone)",), (), "A value in a phone contact",
         R4 + "individual-phone"),
        ("email", "token", ("telecom(system=email)",), (), "A value in an email contact",
         R4 + "individual-email"),
        ("deceased", "token", ("deceasedBoolean", "deceasedDateTime.exists()"), (),
         "This patient has been marked as deceased, or as a death date entered",
         R4 + "Patient-deceased"),
        ("link", "reference", ("link.other",), ("Patient", "RelatedPerson"),
         "All patients linked to the given patient", R4 + "Patient-link"),
        ("organization", "reference", ("managingOrganization",), ("Organization",),
         "The organization that is the custodian of the patient record",
         R4 + "Patient-organization"),
    ),
    "Practitioner": (
        ("identifier", "token", ("identifier",), (), "A practitioner's Identifier",
         R4 + "Practitioner-identifier"),
        ("name", "string", ("name",), (), "A server defined search that may match any of the "
         "string fields in the HumanName", R4 + "Practitioner-name"),
        ("family", "string", ("name.family",), (), "A portion of the family name",
         R4 + "individual-family"),
        ("given", "string", ("name.given",), (), "A portion of the given name",
         R4 + "individual-given"),
        ("active", "token", ("active",), (), "Whether the practitioner record is active",
         R4 + "Practitioner-active"),
        ("telecom", "token", ("telecom",), (), "The value in any kind of contact",
         R4 + "individual-telecom"),
    ),
    "PractitionerRole": (
        ("identifier", "token", ("identifier",), (), "A practitioner's Identifier",
         R4 + "PractitionerRole-identifier"),
        ("practitioner", "reference", ("practitioner",), ("Practitioner",),
         "Practitioner that is able to provide the defined services",
         R4 + "PractitionerRole-practitioner"),
        ("organization", "reference", ("organization",), ("Organization",),
         "The identity of the organization the practitioner represents / acts on behalf of",
         R4 + "PractitionerRole-organization"),
        ("role", "token", ("code",), (), "The practitioner can perform this role at for the "
         "organization", R4 + "PractitionerRole-role"),
        ("specialty", "token", ("specialty",), (), "The practitioner has this specialty at an "
         "organization", R4 + "PractitionerRole-specialty"),
        ("active", "token", ("active",), (), "Whether this practitioner role record is in active "
         "use", R4 + "PractitionerRole-active"),
    ),
    "Organization": (
        ("identifier", "token", ("identifier",), (), "Any identifier for the organization",
         R4 + "Organization-identifier"),
        ("name", "string", ("name", "alias"), (), "A portion of the organization's name or alias",
         R4 + "Organization-name"),
        ("active", "token", ("active",), (), "Is the Organization record active",
         R4 + "Organization-active"),
        ("type", "token", ("type",), (), "A code for the type of organization",
         R4 + "Organization-type"),
        ("partof", "reference", ("partOf",), ("Organization",), "An organization of which this "
         "organization forms a part", R4 + "Organization-partof"),
        ("address-postalcode", "string", ("address.postalCode",), (),
         "A postal code specified in an address", R4 + "Organization-address-postalcode"),
    ),
    "DocumentReference": (
        ("patient", "reference", ("subject[Patient]",), ("Patient",),
         "Who/what is the subject of the document", R4 + "clinical-patient"),
        ("subject", "reference", ("subject",), ("Practitioner", "Group", "Device", "Patient"),
         "Who/what is the subject of the document", R4 + "DocumentReference-subject"),
        ("status", "token", ("status",), (), "current | superseded | entered-in-error",
         R4 + "DocumentReference-status"),
        ("identifier", "token", ("masterIdentifier", "identifier"), (),
         "Master Version Specific Identifier", R4 + "clinical-identifier"),
        ("type", "token", ("type",), (), "Kind of document (LOINC if possible)",
         R4 + "clinical-type"),
        ("category", "token", ("category",), (), "Categorization of document",
         R4 + "DocumentReference-category"),
        ("date", "date", ("date",), (), "When this document reference was created",
         R4 + "DocumentReference-date"),
        ("period", "date", ("context.period",), (), "Time of service that is being documented",
         R4 + "DocumentReference-period"),
        ("author", "reference", ("author",), _ANY_PERSON, "Who and/or what authored the document",
         R4 + "DocumentReference-author"),
        ("custodian", "reference", ("custodian",), ("Organization",),
         "Organization which maintains the document", R4 + "DocumentReference-custodian"),
        ("facility", "token", ("context.facilityType",), (),
         "Kind of facility where patient was seen", R4 + "DocumentReference-facility"),
        ("setting", "token", ("context.practiceSetting",), (), "Additional details about where the "
         "content was created (e.g. clinical specialty)", R4 + "DocumentReference-setting"),
        ("event", "token", ("context.event",), (), "Main clinical acts documented",
         R4 + "DocumentReference-event"),
        ("security-label", "token", ("securityLabel",), (), "Document security-tags",
         R4 + "DocumentReference-security-label"),
        ("format", "token", ("content.format",), (), "Format/content rules for the document",
         R4 + "DocumentReference-format"),
        ("relatesto", "reference", ("relatesTo.target",), ("DocumentReference",),
         "Target of the relationship", R4 + "DocumentReference-relatesto"),
        ("relation", "token", ("relatesTo.code",), (), "replaces | transforms | signs | appends",
         R4 + "DocumentReference-relation"),
        ("contenttype", "token", ("content.attachment.contentType",), (),
         "Mime type of the content, with charset etc.", R4 + "DocumentReference-contenttype"),
        ("language", "token", ("content.attachment.language",), (),
         "Human language of the content (BCP-47)", R4 + "DocumentReference-language"),
        ("location", "uri", ("content.attachment.url",), (), "Uri where the data can be found",
         R4 + "DocumentReference-location"),
        ("description", "string", ("description",), (), "Human-readable description",
         R4 + "DocumentReference-description"),
        ("authenticator", "reference", ("authenticator",), ("Practitioner", "Organization",
         "PractitionerRole"), "Who/what authenticated the document",
         R4 + "DocumentReference-authenticator"),
        ("encounter", "reference", ("context.encounter[Encounter]",), ("Encounter",),
         "Context of the document content", R4 + "clinical-encounter"),
        ("related", "reference", ("context.related",), (), "Related identifiers or resources",
         R4 + "DocumentReference-related"),
        # IHE MHD ITI-67 and ANS PDSm additions
        ("creation", "date", ("content.attachment.creation",), (),
         "Date attachment was first created (MHD)", MHD + "DocumentReference-Creation"),
        ("period-start", "date", ("context.period.start",), (),
         "Start of the documented act (PDSm dateDebutActe)",
         PDSM + "PDSm_DocumentReference_period-start"),
        ("period-end", "date", ("context.period.end",), (),
         "End of the documented act (PDSm dateFinActe)",
         PDSM + "PDSm_DocumentReference_period-end"),
        ("isArchived", "token", IS_ARCHIVED_PATHS, (),
         "Archived document entries (PDSm)", PDSM + "PDSm_isArchived"),
    ),
    "List": (
        ("patient", "reference", ("subject[Patient]",), ("Patient",),
         "If all resources have the same subject", R4 + "clinical-patient"),
        ("subject", "reference", ("subject",), ("Group", "Device", "Patient", "Location"),
         "If all resources have the same subject", R4 + "List-subject"),
        ("status", "token", ("status",), (), "current | retired | entered-in-error",
         R4 + "List-status"),
        ("code", "token", ("code",), (), "What the purpose of this list is", R4 + "clinical-code"),
        ("identifier", "token", ("identifier",), (), "Business identifier",
         R4 + "clinical-identifier"),
        ("date", "date", ("date",), (), "When the list was prepared", R4 + "clinical-date"),
        ("source", "reference", ("source",),
         ("Practitioner", "Device", "Patient", "PractitionerRole"),
         "Who and/or what defined the list contents (aka Author)", R4 + "List-source"),
        ("item", "reference", ("entry.item",), (), "Actual entry", R4 + "List-item"),
        ("title", "string", ("title",), (), "Descriptive name for the list", R4 + "List-title"),
        ("encounter", "reference", ("encounter",), ("Encounter",), "Context in which list created",
         R4 + "clinical-encounter"),
        # IHE MHD ITI-66 and ANS PDSm additions
        ("designationType", "token",
         tuple(f"extension({u}).valueCodeableConcept" for u in DESIGNATION_TYPE_EXTS), (),
         "Clinical code of the SubmissionSet or Folder (MHD)", MHD + "List-DesignationType"),
        ("sourceId", "token", tuple(f"extension({u}).valueIdentifier" for u in SOURCE_ID_EXTS), (),
         "Publisher organization identity of the SubmissionSet (MHD)", MHD + "List-SourceId"),
        ("isArchived", "token", IS_ARCHIVED_PATHS, (),
         "Archived submission sets (PDSm)", PDSM + "PDSm_isArchived"),
    ),
    "Consent": (
        ("patient", "reference", ("patient",), ("Patient",), "Who the consent applies to",
         R4 + "clinical-patient"),
        ("status", "token", ("status",), (), "draft | proposed | active | rejected | inactive | "
         "entered-in-error", R4 + "Consent-status"),
        ("category", "token", ("category",), (), "Classification of the consent statement",
         R4 + "Consent-category"),
        ("actor", "reference", ("provision.actor.reference",),
         ("Practitioner", "Group", "Organization", "CareTeam", "Device", "Patient",
          "PractitionerRole", "RelatedPerson"),
         "Resource for the actor (or group, by role)", R4 + "Consent-actor"),
        ("purpose", "token", ("provision.purpose",), (),
         "Context of activities covered by this rule", R4 + "Consent-purpose"),
        ("period", "date", ("provision.period",), (), "Timeframe for this rule",
         R4 + "Consent-period"),
        ("scope", "token", ("scope",), (), "Which of the four areas this resource covers",
         R4 + "Consent-scope"),
        ("action", "token", ("provision.action",), (), "Actions controlled by this rule",
         R4 + "Consent-action"),
        ("data", "reference", ("provision.data.reference",), (), "The actual data reference",
         R4 + "Consent-data"),
        ("date", "date", ("dateTime",), (), "When this Consent was created or indexed",
         R4 + "clinical-date"),
        ("identifier", "token", ("identifier",), (),
         "Identifier for this record (external references)", R4 + "clinical-identifier"),
    ),
    "RelatedPerson": (
        ("patient", "reference", ("patient",), ("Patient",), "The patient this related person is related to",
         R4 + "RelatedPerson-patient"),
        ("identifier", "token", ("identifier",), (), "An Identifier of the RelatedPerson",
         R4 + "RelatedPerson-identifier"),
        ("name", "string", ("name",), (), "A server defined search that may match any of the "
         "string fields in the HumanName", R4 + "RelatedPerson-name"),
        ("relationship", "token", ("relationship",), (), "The relationship between the patient "
         "and the relatedperson", R4 + "RelatedPerson-relationship"),
        ("active", "token", ("active",), (), "Indicates if the related person record is active",
         R4 + "RelatedPerson-active"),
        ("birthdate", "date", ("birthDate",), (), "The Related Person's date of birth",
         R4 + "individual-birthdate"),
        ("gender", "token", ("gender",), (), "Gender of the related person", R4 + "individual-gender"),
    ),
    "AuditEvent": (
        ("patient", "reference", ("agent.who[Patient]", "entity.what[Patient]"), ("Patient",),
         "Identifier of who", R4 + "AuditEvent-patient"),
        ("entity", "reference", ("entity.what",), (), "Specific instance of resource",
         R4 + "AuditEvent-entity"),
        ("entity-type", "token", ("entity.type",), (), "Type of entity involved",
         R4 + "AuditEvent-entity-type"),
        ("entity-role", "token", ("entity.role",), (), "What role the entity played",
         R4 + "AuditEvent-entity-role"),
        ("agent", "reference", ("agent.who",), _ANY_PERSON, "Identifier of who",
         R4 + "AuditEvent-agent"),
        ("agent-role", "token", ("agent.role",), (), "Agent role in the event",
         R4 + "AuditEvent-agent-role"),
        ("type", "token", ("type",), (), "Type/identifier of event", R4 + "AuditEvent-type"),
        ("subtype", "token", ("subtype",), (), "More specific type/id for the event",
         R4 + "AuditEvent-subtype"),
        ("action", "token", ("action",), (), "Type of action performed during the event",
         R4 + "AuditEvent-action"),
        ("date", "date", ("recorded",), (), "Time when the event was recorded",
         R4 + "AuditEvent-date"),
        ("outcome", "token", ("outcome",), (), "Whether the event succeeded or failed",
         R4 + "AuditEvent-outcome"),
        # Not an R4 parameter (R5 has AuditEvent-purpose): the R4 elements of the same meaning.
        ("purpose", "token", ("purposeOfEvent", "agent.purposeOfUse"), (),
         "Purpose of the event or of the agent's participation (not in R4 core)", ""),
        ("source", "reference", ("source.observer",), _ANY_PERSON,
         "The identity of source detecting the event", R4 + "AuditEvent-source"),
        ("site", "token", ("source.site",), (), "Logical source location within the enterprise",
         R4 + "AuditEvent-site"),
        ("altid", "token", ("agent.altId",), (), "Alternative User identity",
         R4 + "AuditEvent-altid"),
        ("policy", "uri", ("agent.policy",), (), "Policy that authorized event",
         R4 + "AuditEvent-policy"),
    ),
    "Observation": (
        ("patient", "reference", ("subject[Patient]",), ("Patient",),
         "The subject that the observation is about (if patient)", R4 + "clinical-patient"),
        ("subject", "reference", ("subject",), ("Group", "Device", "Patient", "Location"),
         "The subject that the observation is about", R4 + "Observation-subject"),
        ("code", "token", ("code",), (), "The code of the observation type", R4 + "clinical-code"),
        ("category", "token", ("category",), (), "The classification of the type of observation",
         R4 + "Observation-category"),
        ("status", "token", ("status",), (), "The status of the observation",
         R4 + "Observation-status"),
        ("date", "date", ("effectiveDateTime", "effectivePeriod", "effectiveInstant"), (),
         "Obtained date/time. If the obtained element is a period, a date that falls in the period",
         R4 + "clinical-date"),
        ("identifier", "token", ("identifier",), (), "The unique id for a particular observation",
         R4 + "clinical-identifier"),
        ("value-quantity", "quantity", ("valueQuantity",), (),
         "The value of the observation, if the value is a Quantity",
         R4 + "Observation-value-quantity"),
        ("value-concept", "token", ("valueCodeableConcept",), (),
         "The value of the observation, if the value is a CodeableConcept",
         R4 + "Observation-value-concept"),
        ("value-string", "string", ("valueString",), (),
         "The value of the observation, if the value is a string",
         R4 + "Observation-value-string"),
        ("component-code", "token", ("component.code",), (), "The component code of the observation type",
         R4 + "Observation-component-code"),
        ("performer", "reference", ("performer",),
         ("Practitioner", "Organization", "CareTeam", "Patient", "PractitionerRole", "RelatedPerson"),
         "Who performed the observation", R4 + "Observation-performer"),
        ("encounter", "reference", ("encounter",), ("Encounter",),
         "Encounter related to the observation", R4 + "clinical-encounter"),
        ("has-member", "reference", ("hasMember",), ("Observation",),
         "Related resource that belongs to the Observation group", R4 + "Observation-has-member"),
        ("derived-from", "reference", ("derivedFrom",), (),
         "Related measurements the observation is made from", R4 + "Observation-derived-from"),
        ("specimen", "reference", ("specimen",), ("Specimen",), "Specimen used for this observation",
         R4 + "Observation-specimen"),
        ("data-absent-reason", "token", ("dataAbsentReason",), (),
         "The reason why the expected value in the element Observation.value[x] is missing.",
         R4 + "Observation-data-absent-reason"),
    ),
    "DiagnosticReport": (
        ("patient", "reference", ("subject[Patient]",), ("Patient",),
         "The subject of the report if a patient", R4 + "clinical-patient"),
        ("subject", "reference", ("subject",), ("Group", "Device", "Patient", "Location"),
         "The subject of the report", R4 + "DiagnosticReport-subject"),
        ("code", "token", ("code",), (), "The code for the report, as opposed to codes for the "
         "atomic results, which are the names on the observation resource referred to from the "
         "result", R4 + "clinical-code"),
        ("category", "token", ("category",), (), "Which diagnostic discipline/department created "
         "the report", R4 + "DiagnosticReport-category"),
        ("status", "token", ("status",), (), "The status of the report",
         R4 + "DiagnosticReport-status"),
        ("date", "date", ("effectiveDateTime", "effectivePeriod"), (),
         "The clinically relevant time of the report", R4 + "clinical-date"),
        ("issued", "date", ("issued",), (), "When the report was issued",
         R4 + "DiagnosticReport-issued"),
        ("identifier", "token", ("identifier",), (), "An identifier for the report",
         R4 + "clinical-identifier"),
        ("result", "reference", ("result",), ("Observation",),
         "Link to an atomic result (observation resource)", R4 + "DiagnosticReport-result"),
        ("performer", "reference", ("performer",),
         ("Practitioner", "Organization", "CareTeam", "PractitionerRole"),
         "Who is responsible for the report", R4 + "DiagnosticReport-performer"),
        ("results-interpreter", "reference", ("resultsInterpreter",),
         ("Practitioner", "Organization", "CareTeam", "PractitionerRole"),
         "Who was the source of the report", R4 + "DiagnosticReport-results-interpreter"),
        ("conclusion", "token", ("conclusionCode",), (),
         "A coded conclusion (interpretation/impression) on the report",
         R4 + "DiagnosticReport-conclusion"),
        ("based-on", "reference", ("basedOn",),
         ("CarePlan", "MedicationRequest", "NutritionOrder", "ServiceRequest", "ImmunizationRecommendation"),
         "Reference to the service request.", R4 + "DiagnosticReport-based-on"),
        ("encounter", "reference", ("encounter",), ("Encounter",),
         "The Encounter when the order was made", R4 + "clinical-encounter"),
        ("specimen", "reference", ("specimen",), ("Specimen",), "The specimen details",
         R4 + "DiagnosticReport-specimen"),
    ),
    "MedicationDispense": (
        ("patient", "reference", ("subject[Patient]",), ("Patient",),
         "The identity of a patient to list dispenses for", R4 + "clinical-patient"),
        ("subject", "reference", ("subject",), ("Group", "Patient"),
         "The identity of a patient for whom to list dispenses", R4 + "MedicationDispense-subject"),
        ("code", "token", ("medicationCodeableConcept",), (),
         "Returns dispenses of this medicine code", R4 + "clinical-code"),
        ("medication", "reference", ("medicationReference",), ("Medication",),
         "Returns dispenses of this medicine resource", R4 + "medications-medication"),
        ("status", "token", ("status",), (), "Returns dispenses with a specified dispense status",
         R4 + "medications-status"),
        ("identifier", "token", ("identifier",), (), "Returns dispenses with this external identifier",
         R4 + "clinical-identifier"),
        ("performer", "reference", ("performer.actor",),
         ("Practitioner", "Organization", "Device", "Patient", "PractitionerRole", "RelatedPerson"),
         "Returns dispenses performed by a specific individual", R4 + "MedicationDispense-performer"),
        ("whenhandedover", "date", ("whenHandedOver",), (),
         "Returns dispenses handed over on this date", R4 + "MedicationDispense-whenhandedover"),
        ("whenprepared", "date", ("whenPrepared",), (), "Returns dispenses prepared on this date",
         R4 + "MedicationDispense-whenprepared"),
        ("type", "token", ("type",), (), "Returns dispenses of a specific type",
         R4 + "MedicationDispense-type"),
        ("prescription", "reference", ("authorizingPrescription",), ("MedicationRequest",),
         "Multiple Resources: The identity of a prescription to list dispenses from",
         R4 + "MedicationDispense-prescription"),
        ("receiver", "reference", ("receiver",), ("Practitioner", "Patient"),
         "The identity of a receiver to list dispenses for", R4 + "MedicationDispense-receiver"),
        ("context", "reference", ("context",), ("EpisodeOfCare", "Encounter"),
         "Returns dispenses with a specific context (episode or episode of care)",
         R4 + "MedicationDispense-context"),
    ),
    "MedicationStatement": (
        ("patient", "reference", ("subject[Patient]",), ("Patient",),
         "Returns statements for a specific patient.", R4 + "clinical-patient"),
        ("subject", "reference", ("subject",), ("Group", "Patient"),
         "The identity of a patient, animal or group to list statements for",
         R4 + "MedicationStatement-subject"),
        ("code", "token", ("medicationCodeableConcept",), (),
         "Return statements of this medication code", R4 + "clinical-code"),
        ("medication", "reference", ("medicationReference",), ("Medication",),
         "Return statements of this medication reference", R4 + "medications-medication"),
        ("status", "token", ("status",), (), "Return statements that match the given status",
         R4 + "medications-status"),
        ("effective", "date", ("effectiveDateTime", "effectivePeriod"), (),
         "Date when patient was taking (or not taking) the medication",
         R4 + "MedicationStatement-effective"),
        ("category", "token", ("category",), (), "Returns statements of this category of "
         "medicationstatement", R4 + "MedicationStatement-category"),
        ("identifier", "token", ("identifier",), (), "Return statements with this external identifier",
         R4 + "clinical-identifier"),
        ("source", "reference", ("informationSource",),
         ("Practitioner", "Organization", "Patient", "PractitionerRole", "RelatedPerson"),
         "Who or where the information in the statement came from", R4 + "MedicationStatement-source"),
        ("context", "reference", ("context",), ("EpisodeOfCare", "Encounter"),
         "Returns statements for a specific context (episode or episode of Care).",
         R4 + "MedicationStatement-context"),
        ("part-of", "reference", ("partOf",),
         ("Procedure", "Observation", "MedicationAdministration", "MedicationDispense",
          "MedicationStatement"),
         "Returns statements that are part of another event.", R4 + "MedicationStatement-part-of"),
    ),
    "Immunization": (
        ("patient", "reference", ("patient",), ("Patient",), "The patient for the vaccination record",
         R4 + "clinical-patient"),
        ("date", "date", ("occurrenceDateTime",), (), "Vaccination  (non)-Administration Date",
         R4 + "clinical-date"),
        ("vaccine-code", "token", ("vaccineCode",), (), "Vaccine Product Administered",
         R4 + "Immunization-vaccine-code"),
        ("status", "token", ("status",), (), "Immunization event status", R4 + "Immunization-status"),
        ("status-reason", "token", ("statusReason",), (), "Reason why the vaccine was not administered",
         R4 + "Immunization-status-reason"),
        ("lot-number", "string", ("lotNumber",), (), "Vaccine Lot Number",
         R4 + "Immunization-lot-number"),
        ("identifier", "token", ("identifier",), (), "Business identifier",
         R4 + "Immunization-identifier"),
        ("performer", "reference", ("performer.actor",),
         ("Practitioner", "Organization", "PractitionerRole"),
         "The practitioner or organization who played a role in the vaccination",
         R4 + "Immunization-performer"),
        ("location", "reference", ("location",), ("Location",),
         "The service delivery location or facility in which the vaccine was / was to be "
         "administered", R4 + "Immunization-location"),
        ("manufacturer", "reference", ("manufacturer",), ("Organization",), "Vaccine Manufacturer",
         R4 + "Immunization-manufacturer"),
        ("reason-code", "token", ("reasonCode",), (), "Reason why the vaccine was administered",
         R4 + "Immunization-reason-code"),
        ("series", "string", ("protocolApplied.series",), (),
         "The series being followed by the provider", R4 + "Immunization-series"),
        ("target-disease", "token", ("protocolApplied.targetDisease",), (),
         "The target disease the dose is being administered against",
         R4 + "Immunization-target-disease"),
    ),
    "AllergyIntolerance": (
        ("patient", "reference", ("patient",), ("Patient",), "Who the sensitivity is for",
         R4 + "clinical-patient"),
        ("clinical-status", "token", ("clinicalStatus",), (),
         "active | inactive | resolved", R4 + "AllergyIntolerance-clinical-status"),
        ("verification-status", "token", ("verificationStatus",), (),
         "unconfirmed | confirmed | refuted | entered-in-error",
         R4 + "AllergyIntolerance-verification-status"),
        ("type", "token", ("type",), (), "allergy | intolerance - Underlying mechanism (if known)",
         R4 + "clinical-type"),
        ("category", "token", ("category",), (), "food | medication | environment | biologic",
         R4 + "AllergyIntolerance-category"),
        ("criticality", "token", ("criticality",), (), "low | high | unable-to-assess",
         R4 + "AllergyIntolerance-criticality"),
        ("code", "token", ("code", "reaction.substance"), (),
         "Code that identifies the allergy or intolerance", R4 + "clinical-code"),
        ("date", "date", ("recordedDate",), (), "Date first version of the resource instance was "
         "recorded", R4 + "clinical-date"),
        ("onset", "date", ("reaction.onset",), (), "Date(/time) when manifestations showed",
         R4 + "AllergyIntolerance-onset"),
        ("last-date", "date", ("lastOccurrence",), (), "Date(/time) of last known occurrence of a "
         "reaction", R4 + "AllergyIntolerance-last-date"),
        ("identifier", "token", ("identifier",), (), "External ids for this item",
         R4 + "clinical-identifier"),
        ("recorder", "reference", ("recorder",),
         ("Practitioner", "Patient", "PractitionerRole", "RelatedPerson"),
         "Who recorded the sensitivity", R4 + "AllergyIntolerance-recorder"),
        ("asserter", "reference", ("asserter",),
         ("Practitioner", "Patient", "PractitionerRole", "RelatedPerson"),
         "Source of the information about the allergy", R4 + "AllergyIntolerance-asserter"),
        ("manifestation", "token", ("reaction.manifestation",), (),
         "Clinical symptoms/signs associated with the Event", R4 + "AllergyIntolerance-manifestation"),
        ("severity", "token", ("reaction.severity",), (), "mild | moderate | severe (of event as a whole)",
         R4 + "AllergyIntolerance-severity"),
        ("route", "token", ("reaction.exposureRoute",), (), "How the subject was exposed to the substance",
         R4 + "AllergyIntolerance-route"),
    ),
    "Condition": (
        ("patient", "reference", ("subject[Patient]",), ("Patient",), "Who has the condition?",
         R4 + "clinical-patient"),
        ("subject", "reference", ("subject",), ("Group", "Patient"), "Who has the condition?",
         R4 + "Condition-subject"),
        ("code", "token", ("code",), (), "Code for the condition", R4 + "clinical-code"),
        ("category", "token", ("category",), (), "The category of the condition",
         R4 + "Condition-category"),
        ("clinical-status", "token", ("clinicalStatus",), (), "The clinical status of the condition",
         R4 + "Condition-clinical-status"),
        ("verification-status", "token", ("verificationStatus",), (),
         "unconfirmed | provisional | differential | confirmed | refuted | entered-in-error",
         R4 + "Condition-verification-status"),
        ("severity", "token", ("severity",), (), "The severity of the condition",
         R4 + "Condition-severity"),
        ("onset-date", "date", ("onsetDateTime", "onsetPeriod"), (),
         "Date related onsets (dateTime and Period)", R4 + "Condition-onset-date"),
        ("abatement-date", "date", ("abatementDateTime", "abatementPeriod"), (),
         "Date-related abatements (dateTime and period)", R4 + "Condition-abatement-date"),
        ("recorded-date", "date", ("recordedDate",), (), "Date record was first recorded",
         R4 + "Condition-recorded-date"),
        ("identifier", "token", ("identifier",), (), "A unique identifier of the condition record",
         R4 + "clinical-identifier"),
        ("asserter", "reference", ("asserter",),
         ("Practitioner", "Patient", "PractitionerRole", "RelatedPerson"),
         "Person who asserts this condition", R4 + "Condition-asserter"),
        ("body-site", "token", ("bodySite",), (), "Anatomical location, if relevant",
         R4 + "Condition-body-site"),
        ("encounter", "reference", ("encounter",), ("Encounter",), "Encounter created as part of",
         R4 + "clinical-encounter"),
        ("evidence", "token", ("evidence.code",), (), "Manifestation/symptom",
         R4 + "Condition-evidence"),
    ),
    "Binary": (),
}  # fmt: skip

RESOURCE_TYPES: tuple[str, ...] = tuple(_BY_TYPE)


def _build(rtype: str, rows: tuple[_Row, ...]) -> dict[str, SearchParam]:
    return {
        name: SearchParam(name, ptype, rtype, paths, targets, description, url)
        for name, ptype, paths, targets, description, url in rows
    }


_COMMON_PARAMS = _build("Resource", _COMMON)
_REGISTRY: dict[str, dict[str, SearchParam]] = {
    rtype: {**_build(rtype, _COMMON), **_build(rtype, rows)} for rtype, rows in _BY_TYPE.items()
}


def params_for(resource_type: str) -> dict[str, SearchParam]:
    """Every parameter of a type, common ones included (only those for a type we do not know)."""
    found = _REGISTRY.get(resource_type)
    if found is None:
        return {name: _as(p, resource_type) for name, p in _COMMON_PARAMS.items()}
    return dict(found)


def get_param(resource_type: str, name: str) -> SearchParam | None:
    """The parameter ``name`` of ``resource_type``, or None when it is not defined."""
    found = _REGISTRY.get(resource_type)
    if found is None:
        common = _COMMON_PARAMS.get(name)
        return _as(common, resource_type) if common else None
    return found.get(name)


def _as(param: SearchParam, resource_type: str) -> SearchParam:
    return SearchParam(param.name, param.type, resource_type, param.paths, param.targets,
                       param.description, param.url)  # fmt: skip
