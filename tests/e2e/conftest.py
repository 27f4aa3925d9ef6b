"""Real-browser tests: Playwright for Python driving Debian's Chromium against the live server.

`make test` installs Playwright's Python package (no browser download: it drives the system's
/usr/bin/chromium). Where no Chromium can be had, these tests are skipped with one loud line —
never under CI (CI=true or TESTBED_REQUIRE_SERVICES=1), where a missing browser fails the run.
Every test here is marked `browser`; the page fixture runs an axe-core check on request
(`assert_accessible(page)`).
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.services import REQUIRED

# Playwright's sync API runs an event loop in the test thread, so Django's async-safety check
# must be off for code the tests run there. (tests/test_security.py strips this from the
# environment of its production subprocesses: `check --deploy` rightly refuses it.)
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("TESTBED_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "pw-Testbed-2026!"  # tests.factories.UserFactory's password
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


def _why_no_browser() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        return f"the playwright package is missing ({exc}); run make install"
    if not os.path.exists(CHROMIUM):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


def pytest_collection_modifyitems(config, items):
    why = _why_no_browser()
    if why is None:
        return
    if REQUIRED:
        raise pytest.UsageError(f"Browser tests must run under CI, but {why}.")
    marker = pytest.mark.skip(reason=f"!!! browser tests SKIPPED: {why} !!!")
    for item in items:
        if "e2e" in str(item.fspath):
            item.add_marker(marker)


@pytest.fixture(autouse=True)
def _data_migration_rows(transactional_db):
    """The live server's database is flushed between tests, which also drops the rows our data
    migrations made (the default discount rules): put them back."""
    import importlib

    from django.apps import apps

    importlib.import_module("booking.migrations.0004_default_discounts").add_rules(apps, None)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def new_page(browser, live_server):
    """`new_page(locale="ko-KR", viewport=DESKTOP)` → a fresh page (own cookies) on the live server."""
    contexts = []

    def make(*, locale: str = "ko-KR", viewport: dict | None = None):
        context = browser.new_context(
            base_url=live_server.url,
            locale=locale,
            timezone_id="Asia/Seoul",
            viewport=viewport or DESKTOP,
        )
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page):
    return new_page()


def sign_in(page, username: str, password: str = PASSWORD) -> None:
    """Sign in through /login/ as a person would."""
    page.goto("/login/")
    page.get_by_label("아이디").or_(page.get_by_label("Username")).fill(username)
    page.locator("#id_password").fill(password)
    page.locator("form[action='/login/'] button[type=submit]").click()
    page.wait_for_load_state("networkidle")


def assert_accessible(page, *, context: str = "") -> None:
    """axe-core (bundled by axe-playwright-python): no serious or critical violation."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    bad = [v for v in results.response["violations"] if v.get("impact") in {"serious", "critical"}]
    summary = "; ".join(f"{v['id']}: {v['help']} ({len(v['nodes'])})" for v in bad)
    assert not bad, f"accessibility {context or page.url}: {summary}"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    why = _why_no_browser()
    if why:
        terminalreporter.write_line(
            f"!!! testbed: browser tests SKIPPED because {why} !!!", red=True
        )
