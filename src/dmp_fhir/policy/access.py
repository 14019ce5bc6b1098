"""How a request gets its policy: verify the token, then bind the DMP policy to the caller."""

from __future__ import annotations

import asyncio
from typing import Protocol

from starlette.requests import Request

from ..audit import Auditor, AuditRecord
from ..audit.events import OUTCOME_MINOR_FAILURE
from ..auth.caller import Caller, system_caller
from ..errors import Forbidden, Unauthorized
from ..storage.store import ResourceStore
from .base import AccessPolicy, Unrestricted
from .dmp import DmpPolicy
from .matrix import AccessMatrix
from .senders import acting_professional


class Authenticator(Protocol):
    def verify(self, authorization: str | None) -> Caller: ...

    def may_block(self, authorization: str | None) -> bool:
        """True when ``verify`` may wait on the network (it then runs in a worker thread)."""
        ...


class AccessControl(Protocol):
    """Gives each request its policy."""

    async def policy_for(self, request: Request) -> AccessPolicy: ...


class TokenAccess:
    """Production: a verified bearer token, and the DMP rules."""

    def __init__(
        self, authenticator: Authenticator, store: ResourceStore, matrix: AccessMatrix, audit: Auditor
    ) -> None:
        self.authenticator = authenticator
        self.store = store
        self.matrix = matrix
        self.audit = audit

    async def policy_for(self, request: Request) -> AccessPolicy:
        try:
            header = request.headers.get("authorization")
            if self.authenticator.may_block(header):
                # Fetching the provider's keys must not stall every other request.
                caller = await asyncio.to_thread(self.authenticator.verify, header)
            else:
                caller = self.authenticator.verify(header)
        except Unauthorized as exc:
            # Refused logins are part of the trail too (no patient is known yet).
            await self.audit.record(
                AuditRecord(
                    "login",
                    request.url.path.rsplit("/", 2)[-2] if "/" in request.url.path else "",
                    outcome=OUTCOME_MINOR_FAILURE,
                    outcome_desc=f"401: {exc.diagnostics}",
                )
            )
            raise
        if caller.kind == "system" and caller.on_behalf_of is not None:
            # An establishment system acting for one of its professionals: their rules apply.
            try:
                caller = await acting_professional(self.store, caller)
            except Forbidden as exc:
                await self.audit.record(
                    AuditRecord(
                        "login",
                        request.url.path.rsplit("/", 2)[-2] if "/" in request.url.path else "",
                        caller=caller,
                        outcome=OUTCOME_MINOR_FAILURE,
                        outcome_desc=f"403: {exc.diagnostics}",
                    )
                )
                raise
        request.state.caller = caller
        return DmpPolicy(caller, self.store, self.matrix)


class OpenAccess:
    """No authentication and no rules: for tests and benchmarks of the REST mechanics only.

    It can only be passed to ``create_app`` in code; no setting or environment variable
    selects it.
    """

    async def policy_for(self, request: Request) -> AccessPolicy:
        caller = system_caller("open-access")
        request.state.caller = caller
        return Unrestricted(caller)
