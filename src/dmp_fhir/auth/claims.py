"""Verified JWT claims → ``Caller``: strict shapes, because the policy trusts the result.

The signature proves who issued the claims, not that they make sense together; every claim
the policy reads is checked here for type and shape, and a token that does not fit is
refused (401) rather than partially understood. Unknown claims are ignored.

| Claim | Type | Caller field | Rule |
|---|---|---|---|
| `sub` | string (required) | — | fallback system client id (see `client_id`) |
| `fhirUser` | string | `kind`, `subject` | `Patient/<id>` → patient; `Practitioner/<id>` → practitioner; `RelatedPerson/<id>` → related-person; absent → system client. `<id>` matches `[A-Za-z0-9\\-.]{1,64}`; an absolute URL `<base_url>/Patient/<id>` is also accepted. Any other type or shape → 401 |
| `patient` | string id | `patient` | SMART launch context. Patient token: optional, must equal its own id (else 401 "forged context"). RelatedPerson token: required (the represented patient). Practitioner: optional context. System: refused |
| `profession` | string code | `profession` | TRE_G15 code; **required** for a practitioner; practitioner only |
| `specialty` | string code | `specialty` | TRE_R38 code; practitioner only |
| `rpps` | string `[A-Za-z0-9]{1,32}` | `rpps` | RPPS / IdNatPs; practitioner only |
| `care_setting` | string code | `care_setting` | where the professional works now (SAMU_SMUR, ...); practitioner only |
| `actor_category` | string code | `actor_category` | excluded-actor category; practitioner only |
| `organization` | string `Organization/<id>` | `organization` | practitioner or system only |
| `finess` | string, 9 chars (`2A`/`2B` allowed) | `finess` | practitioner or system only |
| `organization_sector` | string code | `organization_sector` | TRE_R02 code; practitioner or system only |
| `purpose_of_use` | string `[A-Z][A-Z_]{1,31}` | `purpose_of_use` | HL7 v3 ActReason; default `TREAT` (`ETREAT`/`BTG`: emergency access) |
| `on_behalf_of` | string `[A-Za-z0-9]{1,32}` | `on_behalf_of` | system token with `organization` only: the RPPS / IdNatPs of the professional the establishment system acts for; checked against the organisation's PractitionerRoles (else 403) |
| `scope` | string | `scopes` | space-separated SMART scopes (see `scopes.py`); absent → no scope, nothing allowed |
| `client_id`, else `azp` | string `[A-Za-z0-9._:@\\-]{1,128}` | `client_id` | the application; a system token's `subject` is `client_id`, else `azp`, else `sub` (which must then have that shape) |
| `jti` | string (≤ 256) | `token_id` | for the audit trail |
| `secret_connection` | boolean | `secret_connection` | a minor's connection hidden from the legal representatives; patient tokens only |

"code" means a string matching `[A-Za-z0-9_\\-.:]{1,64}`.
"""  # noqa: E501 (a Markdown table, copied into the README)

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .caller import Caller, CallerKind
from .scopes import MAX_SCOPE_CHARS, ScopeSet

ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
CODE = re.compile(r"[A-Za-z0-9_\-.:]{1,64}")
CLIENT = re.compile(r"[A-Za-z0-9._:@\-]{1,128}")
RPPS = re.compile(r"[A-Za-z0-9]{1,32}")
FINESS = re.compile(r"(?:[0-9]{2}|2[AB])[0-9]{7}")
PURPOSE = re.compile(r"[A-Z][A-Z_]{1,31}")
_USER_TYPES: dict[str, CallerKind] = {
    "Patient": "patient",
    "Practitioner": "practitioner",
    "RelatedPerson": "related-person",
}
PRACTITIONER_ONLY = ("profession", "specialty", "rpps", "care_setting", "actor_category")
ORGANIZATION_CLAIMS = ("organization", "finess", "organization_sector")


class ClaimError(ValueError):
    """A claim is missing, of the wrong type or shape; the message is safe to show."""


def _text(
    claims: Mapping[str, Any], name: str, shape: re.Pattern[str] | None = None, *, limit: int = 256
) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ClaimError(f"claim '{name}' must be a string")
    if len(value) > limit or (shape is not None and not shape.fullmatch(value)):
        raise ClaimError(f"claim '{name}' is malformed")
    return value


def _id(value: str | None, name: str) -> str | None:
    if value is not None and (not ID.fullmatch(value) or set(value) == {"."}):
        raise ClaimError(f"claim '{name}' is not a valid resource id")
    return value


def parse_fhir_user(value: Any, base_url: str) -> tuple[CallerKind, str, str] | None:
    """``fhirUser`` → (kind, ``Type/id``, id); None when absent. Relative, or absolute on
    our own base URL (SMART allows an absolute URL; another server's user is not ours)."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 512:
        raise ClaimError("claim 'fhirUser' must be a string")
    base = base_url.rstrip("/") + "/"
    relative = value[len(base) :] if value.startswith(base) else value
    rtype, _, rid = relative.partition("/")
    kind = _USER_TYPES.get(rtype)
    if kind is None or "/" in rid:
        raise ClaimError("claim 'fhirUser' must be Patient/<id>, Practitioner/<id> or RelatedPerson/<id>")
    _id(rid, "fhirUser")
    return kind, f"{rtype}/{rid}", rid


def _numeric_times(claims: Mapping[str, Any]) -> None:
    for name in ("exp", "iat", "nbf"):
        value = claims.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ClaimError(f"claim '{name}' must be a number")


def caller_from_claims(claims: Mapping[str, Any], *, base_url: str) -> Caller:
    """Build the ``Caller`` from signature-verified claims (see the module table)."""
    _numeric_times(claims)
    user = parse_fhir_user(claims.get("fhirUser"), base_url)
    kind: CallerKind = user[0] if user else "system"
    patient = _id(_text(claims, "patient"), "patient")
    azp = _text(claims, "azp", CLIENT)  # validated even when client_id wins
    client_id = _text(claims, "client_id", CLIENT) or azp
    sub = _text(claims, "sub", limit=512)
    token_id = _text(claims, "jti")
    scope_text = _text(claims, "scope", limit=MAX_SCOPE_CHARS)
    purpose = _text(claims, "purpose_of_use", PURPOSE) or "TREAT"
    secret = claims.get("secret_connection", False)
    if not isinstance(secret, bool):
        raise ClaimError("claim 'secret_connection' must be a boolean")
    professional = {name: _text(claims, name, CODE) for name in PRACTITIONER_ONLY if name != "rpps"}
    professional["rpps"] = _text(claims, "rpps", RPPS)
    organization = _text(claims, "organization", limit=128)
    if organization is not None:
        rtype, _, oid = organization.partition("/")
        if rtype != "Organization":
            raise ClaimError("claim 'organization' must be Organization/<id>")
        _id(oid, "organization")
    org = {
        "organization": organization,
        "finess": _text(claims, "finess", FINESS),
        "organization_sector": _text(claims, "organization_sector", CODE),
    }

    if kind != "practitioner":
        present = [n for n in PRACTITIONER_ONLY if professional[n] is not None]
        if kind != "system":
            present += [n for n in ORGANIZATION_CLAIMS if org[n] is not None]
        if present:
            raise ClaimError(f"claim '{present[0]}' is not valid in a {kind} token")
    on_behalf_of = _text(claims, "on_behalf_of", RPPS)
    if on_behalf_of is not None and (kind != "system" or organization is None):
        raise ClaimError("claim 'on_behalf_of' is only valid in a system token that names its organization")
    if secret and kind != "patient":
        raise ClaimError("claim 'secret_connection' is only valid in a patient token")

    if user is None:
        subject = client_id or sub
        if subject is None or not CLIENT.fullmatch(subject):
            raise ClaimError("a token without fhirUser must identify its client (client_id, azp or sub)")
        if patient is not None:
            raise ClaimError("claim 'patient' is not valid in a system token")
    else:
        subject, own_id = user[1], user[2]
        if kind == "patient":
            if patient is not None and patient != own_id:
                raise ClaimError("forged context: claim 'patient' differs from the patient's own id")
            patient = own_id
        elif kind == "related-person" and patient is None:
            raise ClaimError("a RelatedPerson token must name the represented patient (claim 'patient')")
        elif kind == "practitioner" and professional["profession"] is None:
            raise ClaimError("a practitioner token must carry the 'profession' claim")

    return Caller(
        kind=kind,
        subject=subject,
        patient=patient,
        profession=professional["profession"],
        specialty=professional["specialty"],
        rpps=professional["rpps"],
        organization=org["organization"],
        finess=org["finess"],
        organization_sector=org["organization_sector"],
        actor_category=professional["actor_category"],
        care_setting=professional["care_setting"],
        purpose_of_use=purpose,
        scopes=ScopeSet.parse(scope_text),
        client_id=client_id,
        token_id=token_id,
        secret_connection=secret,
        on_behalf_of=on_behalf_of,
    )
