"""The dashboard in headless Chromium: log in, switch brand, submit a job and watch the engine take it to
`completed` without a page reload, cancel another, see the live list update. Screenshots: test-artifacts/."""

import json
import shutil
import threading
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from ai_core import services
from ai_core.engine.runner import run_from_message

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(settings.BASE_DIR) / "test-artifacts"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",
]

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("job_types"),
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason="Chromium is not installed (make test installs Debian's `chromium` when run as root)",
    ),
]


class EngineThread:
    """The real execution engine, in-process: claims and runs pending jobs until stopped."""

    def __init__(self):
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        try:
            while not self.stop.is_set():
                if run_from_message(0, task_id="browser-test") is None:
                    self.stop.wait(0.1)
        finally:
            connection.close()

    def close(self):
        self.stop.set()
        self.thread.join(30)


@pytest.fixture
def browser_page(live_asgi, monkeypatch):
    sync_api = pytest.importorskip("playwright.sync_api")
    # Playwright's sync API keeps an event loop in this thread; our ORM calls here are plain sync code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, base_url=live_asgi)
        page.set_default_timeout(20_000)
        yield page
        browser.close()


def _shot(page, name):
    page.screenshot(path=str(ARTIFACTS / f"browser-{name}.png"), full_page=True)


def test_dashboard_flow_in_headless_chromium(browser_page, personas):
    page = browser_page
    engine = None
    try:
        page.goto("/dashboard/")
        page.fill("#id_username", "ada")  # company admin of Acme: brands A and B
        page.fill("#id_password", "ada-pass-1")
        page.click("#login-form button[type=submit]")
        page.wait_for_selector("#chart-daily-jobs")  # no jobs yet: "No data in this period."
        assert page.locator("#brand-select option").all_inner_texts() == ["A", "B"]
        assert page.locator("#chart-brands").count() == 1
        _shot(page, "1-dashboard")

        page.select_option("#brand-select", label="B")
        page.wait_for_function("document.querySelector('h1').textContent.startsWith('B')")

        page.select_option("#id_job_type", "chat_completion")
        page.fill("#id_description", "from the browser")
        page.fill(
            "#id_input_data",
            json.dumps(
                {
                    "model": "echo-1",
                    "echo": {"delay_ms": 2000, "chunks": 8},
                    "messages": [{"role": "user", "content": "Bonjour Chromium"}],
                }
            ),
        )
        page.click("#submit-form button[type=submit]")
        page.wait_for_selector("#job-status")
        assert page.inner_text("#job-status") == "pending"
        page.evaluate("window.__sameDocument = true")  # survives only if the page never reloads

        engine = EngineThread()
        page.wait_for_function("document.getElementById('job-status').textContent === 'running'")
        _shot(page, "2-job-running")
        page.wait_for_function("document.getElementById('job-status').textContent === 'completed'")
        page.wait_for_selector("#result")
        assert page.evaluate("window.__sameDocument") is True
        assert "Bonjour Chromium" in page.inner_text("#result")
        assert page.inner_text("#progress-text") == "100%"
        assert [t.split()[0] for t in page.locator("#timeline li").all_inner_texts()] == [
            "pending",
            "running",
            "completed",
        ]
        assert page.locator("#cancel-form").is_hidden()
        _shot(page, "3-job-completed")
        engine.close()
        engine = None

        page.goto("/dashboard/")
        page.fill("#id_description", "to be cancelled")
        page.click("#submit-form button[type=submit]")
        page.wait_for_selector("#cancel-button")
        page.evaluate("window.__sameDocument = true")
        page.click("#cancel-button")  # asks first, in a dialog
        page.wait_for_selector("#cancel-dialog[open]")
        page.click("#cancel-confirm")
        page.wait_for_function("document.getElementById('job-status').textContent === 'cancelled'")
        assert page.evaluate("window.__sameDocument") is True
        page.wait_for_function("document.querySelectorAll('#timeline li').length === 2")
        _shot(page, "4-job-cancelled")

        page.goto("/dashboard/jobs/")
        page.wait_for_selector("#job-rows tr[data-job]")
        page.wait_for_function("document.getElementById('live').textContent.includes('live')")
        page.evaluate("window.__sameDocument = true")
        job, _ = services.job_create(
            brand=personas.brand_b,
            user=personas.acme_admin,
            job_type="chat_completion",
            input_data={"messages": [{"role": "user", "content": "from the API"}]},
        )
        page.wait_for_selector(f'#job-rows tr[data-job="{job.job_id}"]')
        assert page.evaluate("window.__sameDocument") is True
        statuses = page.locator("#job-rows .badge").all_inner_texts()
        assert sorted(statuses) == ["cancelled", "completed", "pending"]
        _shot(page, "5-dashboard-live-list")
    finally:
        if engine is not None:
            engine.close()
