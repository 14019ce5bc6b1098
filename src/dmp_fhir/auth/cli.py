"""``dmp-fhir token``: mint a development token for one kind of caller.

The token is signed with the development key (``DMP_FHIR_DEV_KEY_FILE``, created on first
use) for the configured issuer and audience, so only a server running with
``DMP_FHIR_DEV_MODE=true`` (and the same key file) accepts it. The token is checked
against the server's own claim rules before it is printed, so that a typo fails here and
not as a puzzling 401 later (``--allow-invalid`` prints it anyway, to test refusals).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from ..config import get_settings
from ..errors import Unauthorized
from .signing import load_or_create_dev_key, mint_token

DEFAULT_SCOPES = {
    "patient": "patient/*.cruds",
    "related-person": "patient/*.cruds",
    "practitioner": "user/*.cruds",
    "system": "system/*.cruds",
}
WARNING = (
    "warning: this token is signed by the development key; only a server running with "
    "DMP_FHIR_DEV_MODE=true accepts it."
)


def add_token_command(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Register ``token`` on the ``dmp-fhir`` sub-command parsers."""
    parser = subparsers.add_parser(
        "token",
        help="print a development bearer token (accepted only in development mode)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--patient", metavar="ID", help="a patient's own token (fhirUser Patient/ID)")
    who.add_argument("--practitioner", metavar="ID", help="a professional (needs --profession)")
    who.add_argument("--related-person", metavar="ID", help="a legal representative (needs --for-patient)")
    who.add_argument("--system", metavar="CLIENT_ID", help="a backend client (no user)")
    pro = parser.add_argument_group("practitioner")
    pro.add_argument("--profession", metavar="CODE", help="TRE_G15 profession code (e.g. 10: doctor)")
    pro.add_argument("--specialty", metavar="CODE", help="TRE_R38 specialty code (e.g. SM54)")
    pro.add_argument("--rpps", metavar="N", help="RPPS / IdNatPs number")
    pro.add_argument(
        "--organization",
        metavar="ID",
        help="Organization id the professional (or establishment system) acts for",
    )
    pro.add_argument("--finess", metavar="N", help="the organisation's FINESS number")
    pro.add_argument("--organization-sector", metavar="CODE", help="the organisation's TRE_R02 sector")
    pro.add_argument(
        "--on-behalf-of",
        metavar="RPPS",
        help="with --system and --organization: the professional the establishment system acts for",
    )
    pro.add_argument("--care-setting", metavar="CODE", help="e.g. SAMU_SMUR (emergency access)")
    pro.add_argument("--purpose", choices=["TREAT", "ETREAT", "BTG"], help="purpose of use (default TREAT)")
    parser.add_argument("--for-patient", metavar="ID", help="the patient a related person represents")
    parser.add_argument("--scope", help="space-separated SMART scopes (default: everything, for the kind)")
    parser.add_argument(
        "--lifetime", type=int, default=3600, metavar="SECONDS", help="validity in seconds (default 3600)"
    )
    parser.add_argument(
        "--claim",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra claim (repeatable); KEY:=JSON for a non-string value",
    )
    parser.add_argument(
        "--allow-invalid", action="store_true", help="print the token even if the server would refuse it"
    )
    parser.set_defaults(func=cmd_token, token_parser=parser)
    return parser


def _extra_claims(parser: argparse.ArgumentParser, items: list[str]) -> dict[str, Any]:
    claims: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.rstrip(":"):
            parser.error(f"--claim {item!r}: expected KEY=VALUE or KEY:=JSON")
        if key.endswith(":"):
            try:
                claims[key[:-1]] = json.loads(value)
            except ValueError:
                parser.error(f"--claim {item!r}: the value is not JSON")
        else:
            claims[key] = value
    return claims


def build_claims(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The claims for the options given (``parser.error`` exits on inconsistent options)."""
    pro_options = ("profession", "specialty", "rpps", "care_setting", "purpose")
    establishment = ("organization", "finess", "organization_sector")
    if not args.practitioner and any(getattr(args, o) for o in pro_options):
        parser.error("--profession, --specialty, ... only apply to --practitioner")
    if not (args.practitioner or args.system) and any(getattr(args, o) for o in establishment):
        parser.error("--organization, --finess, --organization-sector apply to --practitioner or --system")
    if args.on_behalf_of and not (args.system and args.organization):
        parser.error("--on-behalf-of needs --system and --organization (an establishment system)")
    organization = args.organization
    if organization and not organization.startswith("Organization/"):
        organization = f"Organization/{organization}"
    if bool(args.related_person) != bool(args.for_patient):
        parser.error("--related-person and --for-patient go together")
    claims: dict[str, Any]
    if args.patient:
        kind, claims = "patient", {"fhirUser": f"Patient/{args.patient}", "patient": args.patient}
    elif args.related_person:
        kind = "related-person"
        claims = {"fhirUser": f"RelatedPerson/{args.related_person}", "patient": args.for_patient}
    elif args.practitioner:
        if not args.profession:
            parser.error("--practitioner needs --profession")
        kind, claims = "practitioner", {"fhirUser": f"Practitioner/{args.practitioner}"}
        optional = {
            "profession": args.profession,
            "specialty": args.specialty,
            "rpps": args.rpps,
            "organization": organization,
            "finess": args.finess,
            "organization_sector": args.organization_sector,
            "care_setting": args.care_setting,
            "purpose_of_use": args.purpose,
        }
        claims.update({k: v for k, v in optional.items() if v})
    else:
        # An establishment system (hospital, laboratory, pharmacy): its organisation, and
        # optionally the professional it acts for (authentification indirecte).
        kind, claims = "system", {"client_id": args.system}
        optional = {
            "organization": organization,
            "finess": args.finess,
            "organization_sector": args.organization_sector,
            "on_behalf_of": args.on_behalf_of,
        }
        claims.update({k: v for k, v in optional.items() if v})
    claims["scope"] = args.scope if args.scope is not None else DEFAULT_SCOPES[kind]
    claims.update(_extra_claims(parser, args.claim))
    return claims


def cmd_token(args: argparse.Namespace) -> int:
    from .tokens import TokenVerifier

    parser: argparse.ArgumentParser = args.token_parser
    claims = build_claims(args, parser)
    settings = get_settings()
    key = load_or_create_dev_key(settings.dev_key_file)
    token = mint_token(
        claims, key=key, issuer=settings.issuer, audience=settings.token_audience, lifetime_s=args.lifetime
    )
    # Check with the server's own rules (quietly: the verifier's start-up warnings are for servers).
    check = settings.model_copy(update={"dev_mode": True, "jwks_url": None, "jwks_file": None})
    verifier_log = logging.getLogger("dmp_fhir.auth.tokens")
    level = verifier_log.level
    verifier_log.setLevel(logging.ERROR)
    try:
        TokenVerifier(check).verify(f"Bearer {token}")
    except Unauthorized as exc:
        if not args.allow_invalid:
            print(f"error: the server would refuse this token: {exc.diagnostics}", file=sys.stderr)
            return 2
        print(f"warning: the server will refuse this token: {exc.diagnostics}", file=sys.stderr)
    finally:
        verifier_log.setLevel(level)
    print(WARNING, file=sys.stderr)
    print(token)
    return 0
