"""The interface every read and write path calls, and the unrestricted policy for internal jobs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, Protocol

from ..auth.caller import Caller
from .fields import Resolver

Interaction = Literal["c", "r", "u", "d", "s"]
WriteAction = Literal["create", "update", "delete"]


class AccessPolicy(Protocol):
    """Decides for one caller. Filters go *into* the queries; checks raise FhirErrors."""

    caller: Caller

    def require(self, rtype: str, interaction: Interaction) -> None:
        """Refuse (403) what the token's scopes do not allow, before anything is read."""

    async def prepare(self, focus_patients: set[str] | None = None) -> None:
        """Load what the filters need (relations to patients); idempotent."""

    def scope(self, rtype: str) -> Mapping[str, Any] | None:
        """The filter bound to every query on ``rtype`` (None: nothing is visible)."""

    async def explain_hidden(self, rtype: str, doc: Mapping[str, Any]) -> None:
        """``doc`` exists but the filter hid it: raise 403 for a patient-level refusal
        (return normally, and the caller answers 404, for a document-level one)."""

    async def check_focus(self, focus_patients: set[str], rtype: str = "DocumentReference") -> None:
        """A search of ``rtype`` names exactly these patients: 403 when the caller may not see one."""

    async def check_write(
        self,
        rtype: str,
        action: WriteAction,
        new: Mapping[str, Any] | None,
        old: Mapping[str, Any] | None,
        *,
        planned: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        """``new``/``old`` are stored documents (resource + ``_p_`` fields). ``planned`` holds the
        documents a transaction writes alongside (by ``Type/id``), already checked."""

    async def binary_visible(self, binary: Mapping[str, Any]) -> bool:
        """A Binary is readable only through a DocumentReference the caller may see."""

    async def check_operation(self, operation: str, rtype: str, pid: str | None) -> None:
        """May the caller run the lifecycle operation ``$operation`` for patient ``pid``?"""

    async def authorship(
        self, rtype: str, resource: Mapping[str, Any], authors: list[str], resolve: Resolver
    ) -> list[str]:
        """Of a version's author keys, those that keep author-based access: the authors
        entitled to write it (the writer, a professional of the writing establishment)."""

    async def declare_sender(self, resources: Iterable[Mapping[str, Any]]) -> Caller:
        """An establishment system writing these resources: decide for the professional they
        declare from now on (policy/senders.py); returns the caller decided for."""


class Unrestricted:
    """No policy: internal jobs (sample loading, retention purge) and reference benchmarks.

    Never reachable from HTTP: the app always builds a ``DmpPolicy`` from the verified token.
    """

    def __init__(self, caller: Caller) -> None:
        self.caller = caller

    def require(self, rtype: str, interaction: Interaction) -> None:
        return None

    async def prepare(self, focus_patients: set[str] | None = None) -> None:
        return None

    def scope(self, rtype: str) -> Mapping[str, Any] | None:
        return {}

    async def explain_hidden(self, rtype: str, doc: Mapping[str, Any]) -> None:
        return None

    async def check_focus(self, focus_patients: set[str], rtype: str = "DocumentReference") -> None:
        return None

    async def check_write(
        self,
        rtype: str,
        action: WriteAction,
        new: Mapping[str, Any] | None,
        old: Mapping[str, Any] | None,
        *,
        planned: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        return None

    async def binary_visible(self, binary: Mapping[str, Any]) -> bool:
        return True

    async def check_operation(self, operation: str, rtype: str, pid: str | None) -> None:
        return None

    async def declare_sender(self, resources: Iterable[Mapping[str, Any]]) -> Caller:
        return self.caller

    async def authorship(
        self, rtype: str, resource: Mapping[str, Any], authors: list[str], resolve: Resolver
    ) -> list[str]:
        return authors
