"""Who is calling: the identity and context the access policy decides on.

Built from a verified token (``tokens.py``); nothing else creates a ``Caller`` except the
explicit, greppable ``system_caller()`` used by internal jobs (loading samples, purge).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .scopes import ScopeSet

CallerKind = Literal["patient", "related-person", "practitioner", "system", "internal"]

_SCOPE_CONTEXT: dict[str, str] = {
    "patient": "patient",
    "related-person": "patient",
    "practitioner": "user",
    "system": "system",
}

#: HL7 v3 ActReason codes that mean an emergency access (bris de glace).
EMERGENCY_PURPOSES = frozenset({"ETREAT", "BTG"})


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated caller of one request."""

    kind: CallerKind
    #: ``fhirUser`` (``Patient/x``, ``Practitioner/y``, ``RelatedPerson/z``) or the client id.
    subject: str
    #: The patient whose record is in context: the caller's own id for a patient, the
    #: represented patient for a legal representative (SMART ``patient`` launch context).
    patient: str | None = None
    profession: str | None = None  # TRE_G15-ProfessionSante code
    specialty: str | None = None  # TRE_R38-SpecialiteOrdinale code
    rpps: str | None = None  # the professional's national id (RPPS / IdNatPs)
    organization: str | None = None  # ``Organization/<id>`` the professional acts for
    finess: str | None = None  # that organisation's FINESS number
    organization_sector: str | None = None  # TRE_R02-SecteurActivite code
    actor_category: str | None = None  # excluded-actor category, if the IdP says so
    care_setting: str | None = None  # where the professional works now (SAMU_SMUR, ER, ...)
    purpose_of_use: str = "TREAT"  # HL7 v3 ActReason
    scopes: ScopeSet = field(default_factory=ScopeSet)
    client_id: str | None = None
    token_id: str | None = None
    #: A minor's own connection kept secret from the legal representatives.
    secret_connection: bool = False
    #: System token only: the RPPS / IdNatPs of the professional an establishment system acts
    #: for (claim ``on_behalf_of``), checked against the organisation's PractitionerRoles.
    on_behalf_of: str | None = None
    #: Set on the professional an establishment system declared (authentification
    #: indirecte): that system's client id. The token's scopes stay the system's.
    via_system: str | None = None

    @property
    def is_professional(self) -> bool:
        return self.kind == "practitioner"

    @property
    def wants_emergency_access(self) -> bool:
        return self.purpose_of_use in EMERGENCY_PURPOSES

    @property
    def scope_context(self) -> str | None:
        """The SMART context whose scopes apply: a declared professional keeps the system's."""
        if self.via_system is not None:
            return "system"
        return _SCOPE_CONTEXT.get(self.kind)

    @property
    def practitioner_id(self) -> str | None:
        if self.kind == "practitioner" and self.subject.startswith("Practitioner/"):
            return self.subject.split("/", 1)[1]
        return None


def system_caller(reason: str) -> Caller:
    """An internal, unrestricted caller for server jobs (never reachable from HTTP)."""
    return Caller(kind="internal", subject=f"internal:{reason}", scopes=ScopeSet.everything())
