"""Shared set-up of the portal's browser tests: Debian's Chromium through Playwright, axe-core,
screenshots under tests/artifacts/, a live server holding the samples."""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dmp_fhir.loader import load_paths
from dmp_fhir.repository import Repository
from dmp_fhir.storage import Database, ResourceStore

from .live_server import LiveServer
from .policy_env import PROFESSIONALS, SAMPLES

playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def axe_source() -> str:
    """axe-core's browser bundle, as shipped inside the axe-playwright-python package."""
    import axe_playwright_python

    return (Path(axe_playwright_python.__file__).parent / "axe.min.js").read_text(encoding="utf-8")


def load_samples(mongodb_url: str, live: LiveServer) -> None:
    """Load the samples into the live server's database, on a thread of its own (Playwright's
    sync API may already run an event loop on this one)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _load_samples(mongodb_url, live)).result()


async def _load_samples(mongodb_url: str, live: LiveServer) -> None:
    database = Database(mongodb_url, live.settings.db)
    await database.connect()
    try:
        await load_paths(Repository.internal(ResourceStore(database), live.settings, "tests"), [SAMPLES])
    finally:
        await database.close()


class Api:
    """The FHIR API as professionals see it, over real HTTP."""

    def __init__(self, live: LiveServer) -> None:
        self.live = live

    def headers(self, who: str, **extra: Any) -> dict[str, str]:
        claims = {**PROFESSIONALS[who], "scope": "user/*.cruds", **extra}
        return {"Authorization": f"Bearer {self.live.token(claims)}", "Accept": "application/fhir+json"}

    def search(self, who: str, pid: str, **extra: Any) -> httpx.Response:
        return httpx.get(
            f"{self.live.base_url}/DocumentReference",
            params={"patient": pid, "status": "current"},
            headers=self.headers(who, **extra),
            timeout=60,
        )

    def finds(self, who: str, pid: str, doc_id: str) -> bool:
        response = self.search(who, pid)
        assert response.status_code == 200, response.text
        return any(e["resource"]["id"] == doc_id for e in response.json().get("entry", []))


class Browser:
    def __init__(self, live: LiveServer, page: Any, persona: str) -> None:
        self.origin = live.base_url.rsplit("/fhir", 1)[0]
        self.page = page
        self.persona = persona
        self.csp_errors: list[str] = []
        page.on(
            "console",
            lambda m: self.csp_errors.append(m.text) if "Content Security Policy" in m.text else None,
        )
        page.on("dialog", lambda dialog: dialog.accept())
        self.axe = axe_source()

    def goto(self, path: str) -> None:
        self.page.goto(self.origin + path)

    def check(self, name: str) -> None:
        """axe-core on the page (serious/critical violations fail), no CSP violation, and a
        screenshot at desktop and phone widths."""
        page = self.page
        page.evaluate(self.axe)  # evaluated by the DevTools protocol: the page's CSP still applies to itself
        result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
        serious = [
            f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
            for v in result["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        assert not serious, f"{name}: accessibility violations: {serious}"
        assert not self.csp_errors, f"{name}: CSP violations: {self.csp_errors}"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"portal-{self.persona}-{name}.png"), full_page=True)
        page.set_viewport_size(PHONE)
        page.screenshot(path=str(ARTIFACTS / f"portal-{self.persona}-{name}-mobile.png"), full_page=True)
        overflow = page.evaluate("document.documentElement.scrollWidth > window.innerWidth + 1")
        page.set_viewport_size(DESKTOP)
        assert not overflow, f"{name}: the page is wider than a phone screen"

    def sign_in(self, choice: str) -> None:
        self.goto("/portal/")
        self.check("connexion")
        self.page.select_option("#choix", choice)
        self.page.get_by_role("button", name="Se connecter").click()
        self.page.wait_for_load_state()
        assert self.page.url.endswith("/portal/dossier"), (
            self.page.url,
            self.page.locator("main").inner_text(),
            self.page.context.cookies(),
        )

    def notice(self) -> str:
        text: str = self.page.locator(".notice").inner_text()
        return text


def csrf_of(html: str) -> str:
    """The CSRF token of a portal page's forms."""
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field in the page"
    return found.group(1)


def skip_without_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (./dev.sh test installs Debian's chromium when run as root)")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    skip_without_chromium()
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def open_browser(chromium: Any, server: LiveServer, persona: str) -> Iterator[Browser]:
    context = chromium.new_context(viewport=DESKTOP, locale="fr-FR")
    try:
        yield Browser(server, context.new_page(), persona)
    finally:
        context.close()
