"""The patient's own pages under ``/portal/`` (server-rendered French HTML): the record, masking,
who may access, the access history, closing the record — all through the FHIR API with the
signed-in person's token (see ``api.py``)."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from ..config import Settings
from ..policy.matrix import AccessMatrix
from . import pages, signin
from .state import HERE, build_portal

PREFIX = "/portal"

__all__ = ["PREFIX", "install_portal"]


def install_portal(app: FastAPI, settings: Settings, matrix: AccessMatrix) -> None:
    app.state.portal = build_portal(settings, matrix)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="portal-static")
    app.include_router(signin.router, prefix=PREFIX)
    app.include_router(pages.router, prefix=PREFIX)
