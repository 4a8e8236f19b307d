"""Every console page in headless Chromium, as a brand member, a brand admin and a company admin: what each
may see and nothing of other brands; no horizontal scrolling at 390 px and 1440 px; no serious or critical
axe-core violation (axe from npm, see package.json); keyboard reach of the navigation; charts drawn with
readable small-money axes. Screenshots: test-artifacts/console-<persona>-<page>-<width>.png."""

from pathlib import Path

import pytest
from django.conf import settings

from ai_core import services
from ai_usage.models import Quota
from batches.services import BatchLine, batch_create
from business.services import api_key_create
from web.tests.test_browser import ARTIFACTS, CHROMIUM, FLAGS
from web.tests.test_pages import CHAT, finished
from webhooks.models import WebhookDelivery, WebhookEndpoint

AXE = Path(settings.BASE_DIR) / "node_modules" / "axe-core" / "axe.min.js"
WIDTHS = [(1440, 900), (390, 844)]
# brand B's job, webhook, API key, batch and quota; company Zeta's
NOT_BRAND_A = ["bravo-secret", "424242", "zeta-secret"]

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("job_types"),
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason="Chromium is not installed (make test installs Debian's `chromium` when run as root)",
    ),
    pytest.mark.skipif(not AXE.exists(), reason="axe-core is not installed (make test runs npm ci)"),
]


def _world(personas) -> dict:
    """Brand A's jobs, usage, quota and webhook; brand B and company Zeta each with data marked as theirs."""
    a, b, z = personas.brand_a, personas.brand_b, personas.brand_z
    completed = finished(a, personas.alice, model="gpt-4o-mini", tokens=(700, 300), description="alpha done")
    finished(a, personas.adam, model="gpt-4o", tokens=(100, 20), description="alpha small")
    failed = finished(a, personas.alice, fail=True, description="alpha failed")
    pending, _ = services.job_create(
        brand=a, user=personas.alice, job_type="chat_completion", input_data=CHAT, description="alpha waiting"
    )
    Quota.objects.create(company=a.company, brand=a, monthly_token_limit=50_000)
    endpoint = WebhookEndpoint.objects.create(brand=a, url="https://hooks.example.com/alpha")
    WebhookDelivery.objects.create(
        endpoint=endpoint,
        job=completed,
        job_ref=completed.job_id,
        event="job.completed",
        payload={"event": "job.completed"},
        status="failed",
        attempts=5,
        last_status_code=500,
        last_error="HTTP 500: receiver down",
    )
    api_key_create(brand=a, user=personas.adam, name="alpha export", scopes=["jobs:read"])
    batch_create(
        brand=a,
        user=personas.alice,
        job_type="chat_completion",
        lines=[BatchLine(input_data=CHAT, custom_id="one"), BatchLine(input_data=CHAT, custom_id="two")],
        description="alpha nightly",
    )
    # Marked data of other tenants: must never show where the persona has no access.
    api_key_create(brand=b, user=personas.bob, name="bravo-secret key")
    batch_create(
        brand=b,
        user=personas.bob,
        job_type="chat_completion",
        lines=[BatchLine(input_data=CHAT)],
        description="bravo-secret",
    )
    finished(b, personas.bob, description="bravo-secret job")
    WebhookEndpoint.objects.create(brand=b, url="https://hooks.example.com/bravo-secret")
    Quota.objects.create(company=b.company, brand=b, monthly_token_limit=424_242)
    services.job_create(
        brand=z, user=personas.carol, job_type="chat_completion", input_data=CHAT, description="zeta-secret"
    )
    WebhookEndpoint.objects.create(brand=z, url="https://hooks.example.com/zeta-secret")
    api_key_create(brand=z, user=personas.carol, name="zeta-secret key")
    return {"completed": completed, "failed": failed, "pending": pending, "endpoint": endpoint}


def _pages(world) -> list[tuple[str, str]]:
    return [
        ("overview", "/dashboard/"),
        ("jobs", "/dashboard/jobs/"),
        ("job", f"/dashboard/jobs/{world['completed'].job_id}/"),
        ("job-failed", f"/dashboard/jobs/{world['failed'].job_id}/"),
        ("cancel", f"/dashboard/jobs/{world['pending'].job_id}/cancel/"),
        ("usage", "/dashboard/usage/"),
        ("quotas", "/dashboard/quotas/"),
        ("providers", "/dashboard/providers/"),
        ("webhooks", "/dashboard/webhooks/"),
        ("webhook", f"/dashboard/webhooks/{world['endpoint'].pk}/"),
        ("batches", "/dashboard/batches/"),
        ("api-keys", "/dashboard/api-keys/"),
    ]


# Page.evaluate has no timeout of its own: a stuck run fails after a minute instead of hanging the suite.
AXE_RUN = """async () => {
  const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error("axe.run took over 60 s")), 60000));
  const result = await Promise.race([axe.run(document, {resultTypes: ["violations"]}), timeout]);
  return result.violations.filter(v => v.impact === "serious" || v.impact === "critical")
    .map(v => `${v.id} (${v.impact}): ` +
      v.nodes.slice(0, 3).map(n => n.target.join(" ") + " " + n.failureSummary).join(" | "));
}"""


def _check_page(page, persona: str, name: str, url: str, *, forbidden: list[str], axe_width: int) -> None:
    """Both widths: no horizontal scrolling, none of `forbidden`, a screenshot. axe at `axe_width` (the personas
    alternate, so every page is checked at both widths, in light and dark, and the suite stays quick)."""
    for width, height in WIDTHS:
        page.set_viewport_size({"width": width, "height": height})
        page.goto(url)
        page.wait_for_load_state("load")
        where = f"{persona} {name} at {width}px"
        scroll = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert scroll[0] <= scroll[1], f"{where}: content {scroll[0]}px wide in a {scroll[1]}px viewport"
        text = page.inner_text("body")
        for marker in forbidden:
            assert marker not in text and marker not in page.content(), f"{where} shows {marker!r}"
        if width == axe_width:
            page.add_script_tag(path=str(AXE))
            violations = page.evaluate(AXE_RUN)
            assert violations == [], f"{where}: {violations}"
        page.screenshot(path=str(ARTIFACTS / f"console-{persona}-{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": WIDTHS[0][0], "height": WIDTHS[0][1]})


def _login(context, base_url, username, password):
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{base_url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("#login-form button[type=submit]")
    page.wait_for_url("**/dashboard/")
    return page


def test_every_console_page_for_each_persona_fits_390_and_1440_and_passes_axe(
    live_asgi, personas, llm_env, monkeypatch
):
    sync_api = pytest.importorskip("playwright.sync_api")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    ARTIFACTS.mkdir(exist_ok=True)
    world = _world(personas)
    pages = _pages(world)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            anonymous = browser.new_context(base_url=live_asgi)
            page = anonymous.new_page()
            _check_page(page, "anonymous", "login", "/login/", forbidden=[], axe_width=390)
            anonymous.close()

            # Brand member: brand A's pages, no admin controls, nothing of B or Zeta.
            member = browser.new_context(base_url=live_asgi)
            page = _login(member, live_asgi, "alice", "alice-pass-1")
            assert page.locator("#brand-select option").all_inner_texts() == ["A"]
            for name, url in pages:
                _check_page(page, "member", name, url, forbidden=NOT_BRAND_A, axe_width=390)
            page.goto("/dashboard/providers/")
            assert page.locator("form[action*='/credential/']").count() == 0
            assert "gpt-4o-mini" in page.inner_text("main")
            page.goto(f"/dashboard/webhooks/{world['endpoint'].pk}/")
            assert "receiver down" in page.inner_text("main") and page.get_by_text("Redeliver").count() == 0
            page.goto("/dashboard/jobs/")
            assert "alpha done" in page.inner_text("#job-list") and "bravo" not in page.inner_text("#job-list")
            page.goto("/dashboard/api-keys/")
            assert "alpha export" in page.inner_text("#api-keys") and page.locator("#api-key-form").count() == 0
            assert page.get_by_role("button", name="Revoke alpha export (aic_", exact=False).count() == 0
            member.close()

            # Brand admin: redelivers; still nothing of other brands, no credential forms.
            admin = browser.new_context(base_url=live_asgi)
            page = _login(admin, live_asgi, "adam", "adam-pass-1")
            for name, url in pages:
                _check_page(page, "brand-admin", name, url, forbidden=NOT_BRAND_A, axe_width=1440)
            page.goto(f"/dashboard/webhooks/{world['endpoint'].pk}/")
            page.get_by_role("button", name=f"Redeliver job.completed of {world['completed'].job_id}").click()
            page.wait_for_selector(".messages li")
            assert "queued again" in page.inner_text(".messages")
            assert page.locator("#deliveries tr[data-delivery]").count() == 2
            page.goto("/dashboard/providers/")
            assert page.locator("form[action*='/credential/']").count() == 0
            # A new API key, at 390 px: shown once, on the answer to the form; then revoked through the dialog.
            page.set_viewport_size({"width": 390, "height": 844})
            page.goto("/dashboard/api-keys/")
            page.fill("#id_name", "browser app")
            page.uncheck("input[name=scopes][value='jobs:write']")
            page.click("#api-key-create")
            page.wait_for_selector("#new-key-value")
            raw = page.input_value("#new-key-value")
            assert raw.startswith("aic_") and "will not be shown again" in page.inner_text("#new-key")
            scroll = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            assert scroll[0] <= scroll[1], f"the new key's page is {scroll[0]}px wide at 390 px"
            page.add_script_tag(path=str(AXE))
            assert page.evaluate(AXE_RUN) == []
            page.screenshot(path=str(ARTIFACTS / "console-brand-admin-api-key-created-390.png"), full_page=True)
            # Reloaded, the page no longer has it (both widths, axe).
            _check_page(page, "brand-admin", "api-keys-after", page.url, forbidden=[raw, *NOT_BRAND_A], axe_width=390)
            page.get_by_role("button", name="Revoke browser app (aic_", exact=False).click()
            assert page.is_visible("#revoke-dialog")
            page.click("#revoke-confirm")
            page.wait_for_selector(".messages li")
            assert "revoked" in page.inner_text(".messages")
            assert "revoked" in page.inner_text("#api-keys tbody tr:first-child")
            admin.close()

            # Company admin, dark mode, in Paris: both brands of Acme, key forms, the brand breakdown; no Zeta.
            company = browser.new_context(base_url=live_asgi, color_scheme="dark", timezone_id="Europe/Paris")
            page = _login(company, live_asgi, "ada", "ada-pass-1")
            assert page.locator("#brand-select option").all_inner_texts() == ["A", "B"]
            for name, url in pages:
                _check_page(page, "company-admin", name, url, forbidden=["zeta-secret"], axe_width=390)
            page.goto("/dashboard/")
            assert page.locator("#chart-brands canvas").count() == 1
            page.goto(f"/dashboard/jobs/{world['completed'].job_id}/")
            created = page.locator("dd time").first
            assert created.inner_text().endswith(("CET", "GMT+1")), created.inner_text()  # the viewer's zone (Paris)
            assert created.get_attribute("title").endswith("UTC")  # the server's UTC text stays as a tooltip
            page.goto("/dashboard/providers/")
            assert page.locator("form[action*='/credential/'] input[type=password]").count() >= 1
            assert page.locator("input[type=password]").first.input_value() == ""
            # The brand switcher from the keyboard: arrows move the choice without leaving the page, then Switch.
            page.goto("/dashboard/quotas/")
            assert page.is_hidden("#brand-switch")  # a mouse pick switches at once: no button needed
            page.focus("#brand-select")
            page.keyboard.press("ArrowDown")
            assert page.url.endswith("/dashboard/quotas/") and page.is_visible("#brand-switch")
            page.keyboard.press("Tab")
            page.keyboard.press("Enter")
            page.wait_for_function("document.querySelector('h1').textContent.startsWith('B')")
            assert page.url.endswith("/dashboard/quotas/") and "424242" in page.inner_text("main")  # B's quota
            company.close()

            # Charts: drawn, with small money values readable on the axis and in tooltips; keyboard navigation.
            viewer = browser.new_context(base_url=live_asgi)
            page = _login(viewer, live_asgi, "alice", "alice-pass-1")
            page.wait_for_function("window.AICORE_CHARTS && window.AICORE_CHARTS.charts().length >= 5")
            assert page.evaluate("AICORE_CHARTS.money(0.0001)") == "$0.0001"
            assert page.evaluate("AICORE_CHARTS.money(0.00015)") == "$0.00015"
            ticks = page.evaluate(
                "AICORE_CHARTS.charts().find(c => c.canvas.dataset.chart === 'chart-daily-cost-data')"
                ".scales.y.ticks.map(t => t.label)"
            )
            assert ticks and len(set(ticks)) == len(ticks) and "$0.0000" not in ticks, ticks
            tooltip = page.evaluate(
                """() => { const c = AICORE_CHARTS.charts().find(c => c.canvas.dataset.chart === 'chart-status-data');
                  const i = c.data.labels.findIndex(l => l.startsWith("completed"));
                  c.tooltip.setActiveElements([{datasetIndex: 0, index: i}], {x: 0, y: 0}); c.update();
                  return c.tooltip.body.map(b => b.lines.join(" ")).join(" "); }"""
            )
            assert tooltip == "jobs: 2", tooltip  # completed (2): the count is on the label and in the tooltip
            page.keyboard.press("Tab")
            assert page.evaluate("document.activeElement.textContent") == "Skip to content"
            for _ in range(12):
                page.keyboard.press("Tab")
                if page.evaluate("document.activeElement.textContent") == "Jobs":
                    break
            page.keyboard.press("Enter")
            page.wait_for_url("**/dashboard/jobs/")
            viewer.close()
        finally:
            browser.close()
