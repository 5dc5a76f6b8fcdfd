// Live forecast quality: each champion's running scores on the forecasts its sessions settled
// (GET /v1/models/live), the last retrain started on drift and why, and, when shadows run, the live
// verdicts of each pair (GET /v1/compare/live).
import { api } from "./api.js";
import { $, el, fixed, isNumber, percent, table } from "./dom.js";

const HEADERS = ["horizon", "settled", "pinball (%)", "coverage", "Kupiec p", "MAE / random walk", "since (UTC)"];

// a cell with its figure as shown and, in data-value, as the API gave it
function cell(name, value, text) {
  return el("td", { class: name, "data-value": isNumber(value) ? String(value) : "" }, text);
}

function since(seconds) {
  return isNumber(seconds) ? new Date(seconds * 1000).toISOString().slice(0, 19).replace("T", " ") : "n/a";
}

function championTable(model) {
  const rows = model.horizons.map((h) => [
    cell("horizon", h.horizon, String(h.horizon)),
    cell("count", h.count, String(h.count)),
    cell("pinball", h.pinball, isNumber(h.pinball) ? fixed(h.pinball * 100, 4) : "n/a"),
    cell("coverage", h.coverage, `${percent(h.coverage)} of ${percent(h.expected_coverage, 0)}`),
    cell("kupiec", h.kupiec_p, isNumber(h.kupiec_p) ? fixed(h.kupiec_p, 4) : "n/a"),
    cell("mae-ratio", h.mae_ratio, isNumber(h.mae_ratio) ? fixed(h.mae_ratio, 3) : "n/a"),
    cell("since", h.since, since(h.since)),
  ]);
  const out = table(HEADERS, rows, `${model.mode} champion ${model.version}`);
  out.dataset.version = model.version;
  out.dataset.mode = model.mode;
  return out;
}

// one sentence per pair and horizon: who has the lower loss live, with the test that says so
function verdict(pair, h) {
  const who = { model: `${pair.model} (the sessions' model)`, shadow: `${pair.shadow} (the shadow)` };
  const test = isNumber(h.p_value)
    ? `Diebold-Mariano ${fixed(h.statistic, 2)}, p ${fixed(h.p_value, 4)}`
    : "too few to test";
  const sessions =
    h.sessions === "averaged per time"
      ? `averaged over the ${h.tested} times they settled at`
      : "sessions taken as independent";
  const mean = isNumber(h.mean_difference) ? fixed(h.mean_difference * 100, 4) : "n/a";
  const said = h.verdict === "tie" ? "a tie" : h.verdict ? `${who[h.verdict]} forecasts better` : "no verdict yet";
  const item = el(
    "li",
    {},
    `h${h.horizon}, ${pair.model} against its shadow ${pair.shadow}: ${said}; ` +
      `${h.count} paired forecasts, mean pinball difference ${mean}%, ${test} (${sessions}).`,
  );
  Object.assign(item.dataset, { model: pair.model, shadow: pair.shadow, horizon: h.horizon, verdict: h.verdict || "" });
  return item;
}

export async function loadLive() {
  const [live, compare] = await Promise.all([api("GET", "/v1/models/live"), api("GET", "/v1/compare/live")]);
  const body = $("#live-body");
  body.replaceChildren();
  if (!live.enabled) body.append(el("p", { class: "hint" }, "This service does not score its forecasts live."));
  const champions = (live.models || []).filter((m) => m.champion);
  if (!champions.length) body.append(el("p", { class: "hint" }, "No champion has settled a forecast yet."));
  for (const model of champions) body.append(el("div", { class: "scroll" }, championTable(model)));
  const drift = live.drift_retrain;
  if (drift) {
    const queued = drift.created.slice(0, 19).replace("T", " ");
    const said = `Last retrain on drift: job ${drift.job_id}, queued ${queued} UTC, ${drift.status}. Why: ${drift.reason}`;
    const line = el("p", { class: "drift-retrain" }, said);
    Object.assign(line.dataset, { job: drift.job_id, reason: drift.reason });
    body.append(line);
  }
  if (compare.shadow > 0) {
    const pairs = compare.pairs || [];
    const list = el("ul", { class: "live-verdicts" }, ...pairs.flatMap((p) => p.horizons.map((h) => verdict(p, h))));
    body.append(
      el("h3", {}, `ar vs latent, live (a shadow beside ${percent(compare.shadow, 0)} of new sessions)`),
      pairs.length ? list : el("p", { class: "hint" }, "No forecast settled by a session and its shadow yet."),
    );
  }
  body.dataset.loaded = "ok";
}
