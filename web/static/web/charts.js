// Draws every chart of the page with Chart.js (served from /static/vendor/chart.js/, installed from npm).
// The definitions come from the server (web/charts.py) as JSON next to each <canvas>.
(function () {
  if (!window.Chart) return;  // the numbers are in each chart's table anyway
  const dark = window.matchMedia("(prefers-color-scheme: dark)");
  const palette = ["#2563eb", "#16a34a", "#dc2626", "#f59e0b", "#7c3aed", "#0891b2", "#db2777", "#64748b"];

  // Small amounts keep their significant digits: $0.0001, $0.000015 — never "$0.0000".
  function money(value) {
    const v = Number(value);
    if (v === 0) return "$0";
    const abs = Math.abs(v);
    if (abs >= 1) return "$" + v.toLocaleString("en-US", {minimumFractionDigits: 2, maximumFractionDigits: 2});
    const digits = Math.min(8, Math.max(2, 1 - Math.floor(Math.log10(abs)) + 1));
    return "$" + v.toFixed(digits).replace(/(\.\d*?[1-9])0+$/, "$1").replace(/\.0+$/, "");
  }
  function count(value) { return Number(value).toLocaleString("en-US", {maximumFractionDigits: 3}); }

  function themed() {
    const css = getComputedStyle(document.documentElement);
    Chart.defaults.color = css.getPropertyValue("--muted").trim() || "#526071";
    Chart.defaults.borderColor = css.getPropertyValue("--line").trim() || "#dbe2ea";
    Chart.defaults.font.family = "system-ui, sans-serif";
  }

  function build(canvas) {
    const def = JSON.parse(document.getElementById(canvas.dataset.chart).textContent);
    const fmt = def.money ? money : (v) => count(v) + (def.unit || "");
    const doughnut = def.kind === "doughnut";
    const datasets = def.series.map((s, i) => ({
      label: s.name,
      data: s.values,
      backgroundColor: def.colors || (doughnut ? palette : palette[i % palette.length] + (def.kind === "line" ? "33" : "")),
      borderColor: def.colors ? undefined : palette[i % palette.length],
      borderWidth: def.kind === "line" ? 2 : (doughnut ? 1 : 0),
      fill: def.kind === "line",
      tension: 0.25,
      pointRadius: def.kind === "line" ? 2 : undefined,
    }));
    const narrow = canvas.parentElement.clientWidth < 480;
    const valueAxis = {beginAtZero: true, ticks: {callback: (v) => fmt(v), maxTicksLimit: narrow ? 4 : 6, maxRotation: 0}};
    const labelAxis = {ticks: {autoSkip: true, maxRotation: 0, autoSkipPadding: 12,
      callback(value) { const l = this.getLabelForValue(value); return l.length > 22 ? l.slice(0, 21) + "…" : l; }}};
    const options = {
      responsive: true, maintainAspectRatio: false, animation: false,
      interaction: {mode: doughnut ? "nearest" : "index", intersect: doughnut},
      plugins: {
        legend: {display: doughnut || def.series.length > 1, position: "bottom"},
        tooltip: {callbacks: {label: (ctx) => `${ctx.dataset.label}: ${fmt(ctx.raw)}`}},
      },
    };
    if (!doughnut) {
      options.indexAxis = def.horizontal ? "y" : "x";
      options.scales = def.horizontal ? {x: valueAxis, y: labelAxis} : {x: labelAxis, y: valueAxis};
    }
    return new Chart(canvas, {type: def.kind, data: {labels: def.labels, datasets}, options});
  }

  themed();
  let charts = [...document.querySelectorAll("canvas[data-chart]")].map(build);
  dark.addEventListener("change", () => { charts.forEach(c => c.destroy()); themed(); charts = [...document.querySelectorAll("canvas[data-chart]")].map(build); });
  window.AICORE_CHARTS = {money, charts: () => charts};
})();
