"""/api/docs/ (Swagger UI) and /api/redoc/ in headless Chromium, served by the real ASGI app as `make run`
serves it: they render the operations with every request answered by this server — any other request is
aborted and fails the test. Screenshots: test-artifacts/."""

from urllib.parse import urlsplit

import pytest

from web.tests.test_browser import ARTIFACTS, CHROMIUM, FLAGS
from web.tests.test_browser import pytestmark as browser_marks

pytestmark = browser_marks

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@pytest.fixture
def offline_page(live_asgi, monkeypatch):
    """A page whose requests to anything but loopback are aborted and recorded in `page.foreign`."""
    sync_api = pytest.importorskip("playwright.sync_api")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, base_url=live_asgi)
        page.set_default_timeout(20_000)
        foreign, served = [], []

        def route(route):
            url = route.request.url
            if urlsplit(url).hostname in LOOPBACK or url.startswith(("data:", "blob:")):
                served.append(url)
                route.continue_()
            else:
                foreign.append(url)
                route.abort()

        page.route("**/*", route)
        page.foreign, page.served = foreign, served
        yield page
        browser.close()


def test_swagger_ui_renders_every_operation_from_local_assets(offline_page):
    page = offline_page

    page.goto("/api/docs/")
    page.wait_for_selector(".opblock-summary", state="visible")
    page.locator(".opblock-summary-path", has_text="/ai/jobs/{id}/events/").first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "api-docs-swagger.png"), full_page=False)

    assert page.locator(".opblock").count() >= 40
    assert page.locator(".opblock-summary-description", has_text="Follow one job live (SSE)").count() == 1
    assert any("/static/drf_spectacular_sidecar/swagger-ui-dist/" in url for url in page.served)
    assert page.foreign == []


def test_redoc_renders_from_local_assets(offline_page):
    page = offline_page

    page.goto("/api/redoc/")
    page.locator("h2", has_text="Follow every job of the brand live (SSE)").first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "api-docs-redoc.png"), full_page=False)

    assert any("/static/drf_spectacular_sidecar/redoc/" in url for url in page.served)
    assert page.foreign == []
