"""SMART scopes (``dmp_fhir.auth.scopes``): parsing and ``allows`` tables, v1 and v2."""

from __future__ import annotations

import pytest

from dmp_fhir.auth.scopes import ScopeSet, parse_permissions


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cruds", "cruds"),
        ("rs", "rs"),
        ("r", "r"),
        ("cud", "cud"),
        ("cs", "cs"),
        ("read", "rs"),
        ("write", "cud"),
        ("*", "cruds"),
        ("sr", None),
        ("rr", None),
        ("crudsc", None),
        ("x", None),
        ("Read", None),
        ("R", None),
        ("", None),
        ("c*", None),
    ],
)
def test_permissions(text: str, expected: str | None) -> None:
    assert parse_permissions(text) == (frozenset(expected) if expected is not None else None)


# (scope claim, context, resource type, interaction, allowed)
TABLE = [
    # v2
    ("patient/DocumentReference.cruds", "patient", "DocumentReference", "c", True),
    ("patient/DocumentReference.rs", "patient", "DocumentReference", "s", True),
    ("patient/DocumentReference.rs", "patient", "DocumentReference", "u", False),
    ("patient/DocumentReference.rs", "patient", "Patient", "r", False),
    ("user/*.rs", "user", "Patient", "r", True),
    ("user/*.rs", "user", "DocumentReference", "d", False),
    ("system/*.c", "system", "Binary", "c", True),
    ("system/*.c", "system", "Binary", "r", False),
    ("user/*.rs", "user", "*", "s", True),  # whole-system search: needs a * scope
    ("user/Patient.rs", "user", "*", "s", False),
    # v1
    ("patient/*.read", "patient", "List", "r", True),
    ("patient/*.read", "patient", "List", "s", True),
    ("patient/*.read", "patient", "List", "c", False),
    ("user/DocumentReference.write", "user", "DocumentReference", "u", True),
    ("user/DocumentReference.write", "user", "DocumentReference", "r", False),
    ("user/*.*", "user", "Consent", "d", True),
    # strict contexts: a scope only counts in its own context
    ("user/*.cruds", "patient", "Patient", "r", False),
    ("patient/*.cruds", "user", "Patient", "r", False),
    ("system/*.cruds", "user", "Patient", "r", False),
    ("patient/*.cruds", "other", "Patient", "r", False),
    # fine-grained scopes grant nothing (not supported yet: refusing is the safe choice)
    (
        "patient/DocumentReference.rs?category=http://loinc.org|11488-4",
        "patient",
        "DocumentReference",
        "r",
        False,
    ),
    ("patient/DocumentReference.rs?", "patient", "DocumentReference", "r", False),
    ("patient/DocumentReference.rs?category=x patient/Patient.r", "patient", "Patient", "r", True),
    # malformed scopes grant nothing
    ("patient/DocumentReference.sr", "patient", "DocumentReference", "r", False),
    ("patient/documentReference.rs", "patient", "documentReference", "r", False),
    ("Patient/*.rs", "patient", "Patient", "r", False),
    ("patient/*", "patient", "Patient", "r", False),
    ("patient/*.rs/x", "patient", "Patient", "r", False),
    ("", "patient", "Patient", "r", False),
    # the interaction must be one letter of cruds (history is asked as "r")
    ("patient/*.cruds", "patient", "Patient", "history", False),
    ("patient/*.cruds", "patient", "Patient", "rs", False),
    ("patient/*.cruds", "patient", "Patient", "", False),
    # several scopes, any whitespace
    ("openid fhirUser\tpatient/Patient.r\npatient/List.s", "patient", "List", "s", True),
    ("openid fhirUser launch/patient offline_access online_access", "patient", "Patient", "r", False),
]


@pytest.mark.parametrize(("text", "context", "rtype", "interaction", "allowed"), TABLE)
def test_allows(text: str, context: str, rtype: str, interaction: str, allowed: bool) -> None:
    assert ScopeSet.parse(text).allows(context, rtype, interaction) is allowed


def test_parse_keeps_scopes_and_ignored_tokens() -> None:
    scopes = ScopeSet.parse(
        "openid patient/Patient.rs patient/Patient.rs launch/patient "
        "patient/DocumentReference.rs?category=a&type=b patient/x.zz"
    )
    assert [str(s) for s in scopes.scopes] == [
        "patient/Patient.rs",
        "patient/DocumentReference.rs?category=a&type=b",
    ]
    assert scopes.scopes[1].query == (("category", "a"), ("type", "b")) and scopes.scopes[1].restricted
    assert scopes.ignored == ("openid", "launch/patient", "patient/x.zz")
    assert str(scopes) == "patient/Patient.rs patient/DocumentReference.rs?category=a&type=b"


def test_empty_and_everything() -> None:
    assert ScopeSet() == ScopeSet.parse(None) == ScopeSet.parse("  ")
    for context in ("patient", "user", "system"):
        assert not ScopeSet().allows(context, "Patient", "r")
    assert ScopeSet.everything().allows("system", "*", "d")
    assert ScopeSet.everything().allows("anything", "Whatever", "r")
    assert hash(ScopeSet.parse("user/*.rs")) == hash(ScopeSet.parse("user/*.rs"))
