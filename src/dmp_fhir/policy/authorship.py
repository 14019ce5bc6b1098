"""Which of a document's authors keep author-based access: those entitled to write it.

An author sees their document whatever the patient's consents say ("author keeps access"); a
name in ``DocumentReference.author`` (or a submission set's ``source``) is only a claim made by
the writer, though. So co-authorship grants nothing by itself: the ``_p_authors`` written with a
version keep only the authors who were entitled to write it when it was written — the writer
themself, or a professional of the writing establishment (the care team of a hospital whose
system sends the document, a colleague of the same practice). Any other co-author stays in the
resource, for the reader to see, but opens nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .fields import PERSON_KEY_PREFIXES, Resolver, actor_keys

ESTABLISHMENT_PREFIXES = ("Organization/", "finess:")
#: Keys by which a patient or a legal representative writes (their personal space).
HOLDER_PREFIXES = ("Patient/", "RelatedPerson/")


def author_references(rtype: str, resource: Mapping[str, Any]) -> list[Any]:
    if rtype == "DocumentReference":
        return list(resource.get("author") or ())
    if rtype == "List":
        return [resource.get("source")] if isinstance(resource.get("source"), dict) else []
    return []


async def _establishments(reference: Any, keys: list[str], resolve: Resolver) -> set[str]:
    """The establishments an author designates: its contained role's organisation (in
    ``keys`` already), or the organisation of a literal ``PractitionerRole/x``."""
    found = {k for k in keys if k.startswith(ESTABLISHMENT_PREFIXES)}
    ref = reference.get("reference") if isinstance(reference, dict) else None
    if isinstance(ref, str) and ref.startswith("PractitionerRole/"):
        role = await resolve(ref.split("/_history/")[0])
        organization = ((role or {}).get("organization") or {}).get("reference")
        if isinstance(organization, str):
            found.add(organization)
    return found


async def entitled_authors(
    rtype: str,
    resource: Mapping[str, Any],
    resolve: Resolver,
    *,
    writer: frozenset[str],  # the keys naming the writer as a person
    establishments: Iterable[str],  # the writer's establishments (Organization/x, finess:n)
) -> list[str]:
    """The person keys of the authors entitled to write this version (see the module doc)."""
    mine = set(establishments)
    out: set[str] = set()
    for reference in author_references(rtype, resource):
        keys = await actor_keys(reference, dict(resource), resolve)
        person = {k for k in keys if k.startswith(PERSON_KEY_PREFIXES)}
        if person & writer or (mine and await _establishments(reference, keys, resolve) & mine):
            out |= person
    return sorted(out)


def holder_authors(authors: Iterable[str]) -> list[str]:
    """A patient's (or representative's) write: only the record holders' own names count."""
    return sorted(k for k in authors if k.startswith(HOLDER_PREFIXES))
