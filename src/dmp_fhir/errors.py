"""One error hierarchy, turned into an OperationOutcome in one place (``rest.errors``).

FhirError                     status  issue.code
├── BadRequest                400     invalid / structure / value
├── Unauthorized              401     login
├── Forbidden                 403     forbidden
├── NotFound                  404     not-found
├── MethodNotAllowed          405     not-supported
├── NotAcceptable             406     not-supported
├── Conflict                  409     conflict / duplicate
├── Gone                      410     deleted
├── PreconditionFailed        412     conflict
├── PayloadTooLarge           413     too-costly
├── UnsupportedMediaType      415     not-supported
├── Unprocessable             422     invalid / processing / required ...
└── NotImplementedFeature     501     not-supported
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class Issue:
    """One OperationOutcome.issue."""

    code: str
    diagnostics: str
    severity: str = "error"
    expression: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            out["expression"] = list(self.expression)
        return out


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


class FhirError(Exception):
    """An error that the client caused or must know about, with its HTTP status."""

    status: ClassVar[int] = 500
    default_code: ClassVar[str] = "exception"

    def __init__(
        self,
        diagnostics: str,
        *,
        code: str | None = None,
        expression: tuple[str, ...] | list[str] = (),
        issues: list[Issue] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(diagnostics)
        self.diagnostics = diagnostics
        self.code = code or self.default_code
        self.expression = tuple(expression)
        self.headers = headers or {}
        self._issues = issues
        self.about: str | None = None  # the ``Type/id`` a multi-resource write failed on

    @property
    def issues(self) -> list[Issue]:
        if self._issues:
            return self._issues
        return [Issue(self.code, self.diagnostics, expression=self.expression)]

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


def located(exc: FhirError, entry: int) -> FhirError:
    """The same error, naming the Bundle entry it comes from (``Bundle.entry[i]``)."""
    where = f"Bundle.entry[{entry}]"

    def move(expression: str) -> str:
        if expression.startswith("Bundle."):
            return expression
        head, dot, rest = expression.partition(".")
        if head[:1].isupper():  # Type.element → Bundle.entry[i].resource.element
            return f"{where}.resource{dot}{rest}"
        return f"{where}.resource.{expression}"

    issues = [
        Issue(
            i.code,
            i.diagnostics if i.diagnostics.startswith("Bundle.") else f"{where}: {i.diagnostics}",
            i.severity,
            tuple(move(e) for e in i.expression) or (where,),
        )
        for i in exc.issues
    ]
    out = type(exc)(
        issues[0].diagnostics,
        code=exc.code,
        expression=issues[0].expression,
        issues=issues,
        headers=exc.headers,
    )
    return out


class BadRequest(FhirError):
    status = 400
    default_code = "invalid"


class Unauthorized(FhirError):
    status = 401
    default_code = "login"


class Forbidden(FhirError):
    status = 403
    default_code = "forbidden"


class NotFound(FhirError):
    status = 404
    default_code = "not-found"


class MethodNotAllowed(FhirError):
    status = 405
    default_code = "not-supported"


class NotAcceptable(FhirError):
    status = 406
    default_code = "not-supported"


class Conflict(FhirError):
    status = 409
    default_code = "conflict"


class Gone(FhirError):
    status = 410
    default_code = "deleted"


class PreconditionFailed(FhirError):
    status = 412
    default_code = "conflict"


class PayloadTooLarge(FhirError):
    status = 413
    default_code = "too-costly"


class UnsupportedMediaType(FhirError):
    status = 415
    default_code = "not-supported"


class Unprocessable(FhirError):
    status = 422
    default_code = "invalid"


class NotImplementedFeature(FhirError):
    status = 501
    default_code = "not-supported"
