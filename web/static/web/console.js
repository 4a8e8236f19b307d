// The console's shared helpers: API calls with the page's brand, HTML escaping, and local times.
const AICORE = {
  brand: document.getElementById("brand-id") ? JSON.parse(document.getElementById("brand-id").textContent) : null,
  csrf: (document.cookie.match(/(?:^|; )csrftoken=([^;]+)/) || [])[1] || "",
  api(path, options = {}) {
    const headers = {"Accept": "application/json", "X-Brand-ID": String(AICORE.brand), ...(options.headers || {})};
    if (options.method && options.method !== "GET") headers["X-CSRFToken"] = AICORE.csrf;
    return fetch(path, {credentials: "same-origin", ...options, headers}).then(r => r.json().then(body => ({ok: r.ok, body})));
  },
  text(value) { const d = document.createElement("div"); d.textContent = value == null ? "" : String(value); return d.innerHTML; },
  // One format everywhere, in the viewer's time zone: 2026-12-01 21:05:09 GMT+1. The server writes UTC.
  formatTime(iso) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return null;
    const parts = Object.fromEntries(new Intl.DateTimeFormat("en-GB", {
      year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
      hour12: false, timeZoneName: "short",
    }).formatToParts(date).map(p => [p.type, p.value]));
    return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second} ${parts.timeZoneName}`;
  },
  timeHTML(iso) {
    const shown = AICORE.formatTime(iso);
    return `<time datetime="${AICORE.text(iso)}" data-local="1">${AICORE.text(shown || iso)}</time>`;
  },
  localiseTimes(root = document) {
    root.querySelectorAll("time[datetime]:not([data-local])").forEach((el) => {
      const shown = AICORE.formatTime(el.getAttribute("datetime"));
      if (shown) { el.title = el.textContent; el.textContent = shown; }
      el.dataset.local = "1";
    });
  },
};
// The brand switcher submits on a pick with the mouse; from the keyboard, arrows only move the choice (no page
// change while browsing the list) and the Switch button, shown then, submits.
function brandSwitcher() {
  const select = document.getElementById("brand-select"), button = document.getElementById("brand-switch");
  if (!select || !button) return;
  let keyed = false;
  button.hidden = true;
  select.addEventListener("keydown", () => { keyed = true; });
  select.addEventListener("change", () => { if (keyed) button.hidden = false; else select.form.submit(); });
}
document.addEventListener("DOMContentLoaded", () => { AICORE.localiseTimes(); brandSwitcher(); });
