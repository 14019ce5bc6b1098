"""Structured-data feeds: the rules a transaction Bundle of laboratory results, dispensations
or vaccinations meets before anything is written (issue 18).

As for documents (``mhd.py``), data is shared only about a qualified identity: the patient a
structured resource names must exist and carry an INS. A laboratory report and the results it
groups belong to one patient. Who may write each resource (its author, the matrix, the patient's
consents) is the policy's own check, run on every entry; the journal makes the Bundle all or
nothing. Every refusal names the entry at fault.
"""

from __future__ import annotations

from typing import Any

from .errors import Unprocessable
from .lifecycle.identity import INS_SYSTEMS
from .mhd import Entry, Lookup
from .policy.fields import patient_of
from .policy.matrix import AccessMatrix


def is_structured_feed(entries: list[Entry], matrix: AccessMatrix) -> bool:
    return any(e.rtype in matrix.structured and e.resource is not None for e in entries)


async def check_structured_feed(entries: list[Entry], lookup: Lookup, matrix: AccessMatrix) -> None:
    """Raise a located 422 for the first structured entry that breaks a feed rule."""
    planned = {e.key: e.resource for e in entries if e.resource is not None}
    patients: dict[str, bool] = {}  # Patient/x → has an INS (memo: one look-up per patient)
    owner: dict[str, str | None] = {}
    for entry in entries:
        if entry.rtype not in matrix.structured or entry.resource is None:
            continue
        element = matrix.structured[entry.rtype].patient
        pid = patient_of(entry.resource.get(element))
        owner[entry.key] = pid
        if pid is None:
            raise Unprocessable(
                f"{entry.rtype}.{element} must name the patient (Patient/<id>).",
                code="required",
                expression=(entry.where(element),),
            )
        key = f"Patient/{pid}"
        if key not in patients:
            patient = planned.get(key) or await lookup(key)
            if patient is None:
                raise Unprocessable(
                    f"{key} is not known to this DMP.", code="not-found", expression=(entry.where(element),)
                )
            patients[key] = _has_ins(patient)
        if not patients[key]:
            raise Unprocessable(
                f"{key} has no INS identifier: data is shared only for a qualified identity.",
                code="business-rule",
                expression=(entry.where(element),),
            )
    for entry in entries:
        if entry.rtype != "DiagnosticReport" or entry.resource is None:
            continue
        for n, result in enumerate(entry.resource.get("result") or ()):
            target = _local(result)
            if target is None or target not in planned:
                continue  # a result stored earlier: the policy judged it when it was written
            if not target.startswith("Observation/"):
                raise Unprocessable(
                    "DiagnosticReport.result points to Observations only.",
                    code="business-rule",
                    expression=(entry.where(f"result[{n}]"),),
                )
            if owner.get(target) != owner.get(entry.key):
                raise Unprocessable(
                    f"{target} is about another patient than its report.",
                    code="business-rule",
                    expression=(entry.where(f"result[{n}]"),),
                )


def _has_ins(patient: dict[str, Any]) -> bool:
    return any(
        isinstance(i, dict) and i.get("system") in INS_SYSTEMS and i.get("value")
        for i in patient.get("identifier") or ()
    )


def _local(reference: Any) -> str | None:
    """``Type/id`` of a relative reference (the transaction resolved ``urn:uuid:`` ones)."""
    ref = reference.get("reference") if isinstance(reference, dict) else None
    if not isinstance(ref, str):
        return None
    parts = ref.split("/_history/")[0].rstrip("/").split("/")
    return f"{parts[-2]}/{parts[-1]}" if len(parts) >= 2 else None
