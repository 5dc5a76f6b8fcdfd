// The models (each mode's champion, every version) and the last comparison report, read
// defensively: whatever the report holds is shown.
import { ApiError, MODES, api } from "./api.js";
import { $, el, fixed, isNumber, scalar, table } from "./dom.js";

export async function loadModels() {
  const body = await api("GET", "/v1/models");
  const versions = Array.isArray(body.versions) ? body.versions : [];
  const champions = {}; // mode -> the champion's entry
  const cards = $("#champions");
  cards.replaceChildren();
  for (const mode of MODES) {
    const name = body.champions ? body.champions[mode] : null;
    const entry = versions.find((v) => v.version === name);
    if (entry) champions[mode] = entry;
    const card = el("article", { class: "card" }, el("h3", {}, `${mode} champion`));
    if (!entry) {
      card.append(el("p", { class: "hint" }, `no ${mode} champion: train one (latentcast train)`));
    } else {
      card.append(el("p", { class: "mono" }, entry.version));
      const facts = el("dl");
      const config = entry.config || {};
      const add = (term, value) => facts.append(el("dt", {}, term), el("dd", {}, value));
      add(
        "model",
        [config.cell, `hidden ${config.hidden_size}`, `horizon ${config.horizon}`]
          .concat(mode === "ar" ? [`window ${config.window}`] : [])
          .join(", "),
      );
      for (const [key, value] of Object.entries(entry.metrics || {})) {
        if (isNumber(value) || typeof value === "string") add(key.replaceAll("_", " "), scalar(value));
      }
      const span = entry.data_span || {};
      if (span.first) add("trained on", `${span.source || ""} ${span.first} to ${span.last}`.trim());
      card.append(facts);
    }
    cards.append(card);
    $(`#panel-${mode} .version`).textContent = name || "(no champion)";
  }
  const rows = versions.map((v) => [
    el("td", { class: "mono" }, v.version),
    v.mode,
    String(v.created || "")
      .slice(0, 19)
      .replace("T", " "),
    status(v),
    Object.entries(v.metrics || {})
      .filter(([, x]) => isNumber(x))
      .map(([k, x]) => `${k} ${scalar(x)}`)
      .join(", "),
  ]);
  $("#versions").replaceWith(
    Object.assign(table(["version", "mode", "created (UTC)", "status", "metrics"], rows, "Every registered version"), {
      id: "versions",
    }),
  );
  const ar = champions.ar && champions.ar.config;
  if (ar && isNumber(ar.window)) {
    $("#warmup").value = String(ar.window + 1);
    $("#warmup-hint").textContent =
      `sent when the sessions open; the ar champion needs ${ar.window + 1} prices before its first forecast`;
  }
  return body.champions || {};
}

// a version's place: the champion, a champion before, or a challenger never promoted; and loaded or not
function status(v) {
  const place = v.champion ? "champion" : v.promoted ? "champion before" : "challenger, never promoted";
  return v.loaded && !v.champion ? `${place}, loaded` : place;
}

// which models the report scored, against the champions now: a report outlives the champions it scored
async function scored(models, champions) {
  const now = await champions.catch(() => null);
  const lines = [];
  for (const mode of MODES) {
    if (!models[mode] || typeof models[mode] !== "object") continue;
    const version = models[mode].version;
    if (!version) lines.push(`${mode}: a model trained for this report, not a registered version`);
    else if (!now) lines.push(`${mode}: ${version}`);
    else if (now[mode] === version) lines.push(`${mode}: ${version}, the ${mode} champion`);
    else lines.push(`${mode}: ${version}, no longer the ${mode} champion (now ${now[mode] || "none"})`);
  }
  return lines.length ? el("p", { class: "hint scored" }, `Scored here: ${lines.join("; ")}.`) : null;
}

// Each promotion of a champion with the test that let it in (docs/retraining.md), newest first.
export async function loadPromotions() {
  const body = await api("GET", "/v1/models/promotions");
  const rows = (Array.isArray(body.promotions) ? body.promotions : []).map((p) => [
    String(p.finished || "")
      .slice(0, 19)
      .replace("T", " "),
    p.mode,
    el("td", { class: "mono" }, p.version || ""),
    el("td", { class: "mono" }, p.replaced || "none"),
    p.rule,
    fixed(p.statistic, 2),
    fixed(p.p_better, 4),
    isNumber(p.days) ? String(p.days) : "n/a",
  ]);
  const headers = ["finished (UTC)", "mode", "version", "replaced", "rule", "DM statistic", "p(better)", "days"];
  const caption = rows.length
    ? "Promotions: the rule that fired and its one-sided Diebold-Mariano test"
    : "Promotions: none in the kept retrain job reports";
  $("#promotions").replaceWith(Object.assign(table(headers, rows, caption), { id: "promotions" }));
}

const METRICS = [
  ["mae", "MAE (%)", 100, 3, "low"],
  ["rmse", "RMSE (%)", 100, 3, "low"],
  ["mae_ratio", "MAE / RW", 1, 3, "low"],
  ["directional_accuracy", "direction (%)", 100, 1, "high"],
  ["pinball", "pinball (%)", 100, 4, "low"],
  ["coverage", "10-90% coverage (%)", 100, 1, "nominal"],
];
const NOMINAL = 0.8;
// as the comparison report names its methods (training/report.py)
const LABELS = {
  latent: "latent (model)",
  ar: "ar (model)",
  random_walk: "random walk, 20-day vol",
  previous_return: "previous return",
  linear_ar: "linear AR(5)",
  garch_t: "GARCH(1,1)-t",
  riskmetrics_normal: "RiskMetrics, normal",
  riskmetrics_t: "RiskMetrics, t",
  har_range: "HAR-range, t",
};
const methodLabel = (method) => LABELS[method] || method.replaceAll("_", " ");

function verdictTable(metrics, horizon) {
  const methods = Object.keys(metrics).filter((m) => metrics[m] && metrics[m].pooled && metrics[m].pooled[horizon]);
  const columns = METRICS.filter(([key]) => methods.some((m) => isNumber(metrics[m].pooled[horizon][key])));
  const best = {};
  for (const [key, , , , better] of columns) {
    const score = (m) => {
      const x = metrics[m].pooled[horizon][key];
      if (!isNumber(x)) return Infinity;
      return better === "low" ? x : better === "high" ? -x : Math.abs(x - NOMINAL);
    };
    best[key] = methods.reduce((a, b) => (score(b) < score(a) ? b : a), methods[0]);
  }
  const rows = methods.map((m) => [
    el("th", { scope: "row" }, methodLabel(m)),
    ...columns.map(([key, , scale, digits]) => {
      const x = metrics[m].pooled[horizon][key];
      return el(
        "td",
        best[key] === m && isNumber(x) ? { class: "best" } : {},
        isNumber(x) ? (x * scale).toFixed(digits) : "n/a",
      );
    }),
  ]);
  const days = horizon.replace(/^h/, "");
  return table(
    ["method", ...columns.map((c) => c[1])],
    rows,
    `${days} day(s) ahead, all tickers pooled (best in bold)`,
  );
}

function costTable(rows) {
  const by = {};
  for (const r of rows) (by[r.history] = by[r.history] || {})[r.method] = r.median_us;
  const lines = Object.keys(by)
    .sort((a, b) => a - b)
    .map((n) => [
      Number(n).toLocaleString("en"),
      fixed(by[n].latent_step, 0),
      fixed(by[n].ar_window, 0),
      fixed(by[n].full_rerun, 0),
    ]);
  return table(
    ["history", "latent step (µs)", "ar window (µs)", "full re-run (µs)"],
    lines,
    "Cost of one more forecast",
  );
}

// champions: loadModels's promise of each mode's champion, to say whether the report scored them
export async function loadCompare(champions) {
  const body = $("#compare-body");
  let report;
  try {
    const reply = await api("GET", "/v1/models/compare");
    report = reply && typeof reply === "object" && !Array.isArray(reply) ? reply : { report: reply };
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      body.replaceChildren(el("p", { class: "hint" }, "No comparison report yet: run latentcast compare."));
      return;
    }
    body.replaceChildren(el("p", { class: "hint" }, "The comparison could not be loaded."));
    throw error;
  }
  const parts = [];
  const data = report.data || {};
  const about = [
    report.created && `made ${String(report.created).replace("T", " ")}`,
    data.tickers && `${data.source || ""} prices of ${[].concat(data.tickers).join(", ")}`,
    data.first && `${data.first} to ${data.last}`,
    data.test_start && `test span from ${data.test_start}`,
  ]
    .filter(Boolean)
    .join("; ");
  if (about) parts.push(el("p", {}, about));
  if (report.models && typeof report.models === "object") {
    const note = await scored(report.models, champions);
    if (note) parts.push(note);
  }
  if (report.protocol) parts.push(el("p", { class: "hint" }, `Protocol: ${report.protocol}`));
  const verdict = report.verdict;
  const sentences = Array.isArray(verdict) || typeof verdict === "string";
  if (sentences) {
    parts.push(
      el(
        "ul",
        { class: "verdict" },
        ...[].concat(verdict).map((line) => el("li", {}, String(line).replaceAll("**", ""))),
      ),
    );
  }
  // the report's own tests: one sentence per Diebold-Mariano test, which calls a difference only at p < the level
  const tests = Array.isArray(report.diebold_mariano) ? report.diebold_mariano.filter((t) => t && t.verdict) : [];
  if (tests.length) {
    const loss = (name) => String(name || "").replaceAll("_", " ");
    parts.push(
      el(
        "ul",
        { class: "verdict tests" },
        ...tests.map((t) => el("li", {}, `${t.horizon} day(s), ${loss(t.loss)}: ${t.verdict}`)),
      ),
    );
  }
  const metrics = report.metrics && typeof report.metrics === "object" ? report.metrics : null;
  if (metrics) {
    const first = Object.values(metrics)[0];
    const horizons = first && first.pooled ? Object.keys(first.pooled) : [];
    for (const h of horizons) {
      try {
        parts.push(el("div", { class: "scroll" }, verdictTable(metrics, h)));
      } catch (exc) {
        parts.push(el("p", { class: "hint" }, `The ${h} figures could not be read.`));
      }
    }
  }
  if (Array.isArray(report.cost_per_forecast_us) && report.cost_per_forecast_us.length) {
    parts.push(el("div", { class: "scroll" }, costTable(report.cost_per_forecast_us)));
  }
  // shown above (a verdict in another shape is shown below, as it is)
  const known = new Set(["created", "data", "protocol", "metrics", "cost_per_forecast_us", "horizon", "quantiles"]);
  if (sentences) known.add("verdict");
  if (tests.length) ["diebold_mariano", "significance_level"].forEach((key) => known.add(key));
  for (const [key, value] of Object.entries(report)) {
    if (known.has(key) || value === null || value === undefined) continue;
    parts.push(
      el("details", {}, el("summary", {}, key.replaceAll("_", " ")), el("pre", {}, JSON.stringify(value, null, 2))),
    );
  }
  const figures = el("div", { class: "plots" });
  parts.push(figures);
  body.replaceChildren(...parts);
  const listed = await api("GET", "/v1/models/compare/plots");
  for (const name of listed.plots || []) {
    const blob = await api("GET", `/v1/models/compare/plots/${encodeURIComponent(name)}`);
    const title = name.replace(/\.png$/, "").replaceAll("_", " ");
    figures.append(
      el(
        "figure",
        {},
        el("img", { src: URL.createObjectURL(blob), alt: `comparison plot: ${title}` }),
        el("figcaption", {}, title),
      ),
    );
  }
}
