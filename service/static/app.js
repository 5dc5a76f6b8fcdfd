// The latentcast page: the models, the last comparison, and a live ar vs latent replay.
// Plain script, no build step, no third-party code; every figure comes from the public /v1 API
// (docs/page.md). The API key lives in this script's memory only.
"use strict";

(() => {
  const MODES = ["ar", "latent"];
  const VIEW = 250; // prices shown in a chart: the latest ones
  const CHART = { width: 640, minWidth: 280, aspect: 0.44, minHeight: 210, maxHeight: 300, left: 56, right: 12, top: 12, bottom: 28 };
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (selector, root = document) => root.querySelector(selector);

  let apiKey = "";
  let run = null; // the replay in progress, if any
  let redrawLast = () => {}; // draws the latest replay again (after a resize)

  // ---- talking to the service ---------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (apiKey) headers["X-API-Key"] = apiKey;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (exc) {
      throw new ApiError(0, "unreachable", "the service did not answer; is it running?");
    }
    if (response.ok) {
      if (response.status === 204) return null;
      const type = response.headers.get("Content-Type") || "";
      return type.includes("json") ? response.json() : response.blob();
    }
    let code = "http_error";
    let message = `HTTP ${response.status}`;
    try {
      const reply = await response.json();
      const error = reply && reply.error;
      if (error && typeof error.message === "string") {
        message = error.message;
        code = error.code || code;
      } else if (reply && reply.detail) {
        message = typeof reply.detail === "string" ? reply.detail : JSON.stringify(reply.detail);
      }
    } catch (exc) {
      // not JSON (a proxy's page): the status says enough
    }
    throw new ApiError(response.status, code, message);
  }

  // What went wrong, in plain words, with the service's own message.
  function plain(error, doing) {
    if (!(error instanceof ApiError)) return `${doing} failed: ${error.message || error}`;
    const said = error.message.replace(/\.$/, "");
    switch (error.status) {
      case 0: return `${doing} failed: ${said}.`;
      case 401: return `The service needs a valid API key (${said}). Enter your key above and press Use key.`;
      case 403: return `Your API key may not do this (${said}).`;
      case 404: return `${doing}: not found (${said}).`;
      case 409: return `${doing}: the service's record moved on (${said}).`;
      case 413: return `${doing}: too much at once for the service (${said}).`;
      case 422: return `${doing}: the service refused the data (${said}).`;
      case 429: return `${doing}: your key holds too many open sessions (${said}). Close some, or wait for them to expire.`;
      case 503: return `${doing}: the service cannot serve now (${said}). Try again shortly.`;
      default: return `${doing} failed with HTTP ${error.status} (${said}).`;
    }
  }

  function showError(text) {
    const box = $("#error");
    box.textContent = text;
    box.hidden = false;
  }

  function clearError() {
    const box = $("#error");
    box.textContent = "";
    box.hidden = true;
  }

  // ---- small DOM helpers --------------------------------------------------------------------

  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    for (const child of children) node.append(child instanceof Node ? child : String(child));
    return node;
  }

  function svg(tag, attributes = {}) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    return node;
  }

  function table(headers, rows, caption) {
    const out = el("table");
    if (caption) out.append(el("caption", {}, caption));
    out.append(el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { scope: "col" }, h)))));
    const body = el("tbody");
    for (const row of rows) body.append(el("tr", {}, ...row.map((cell) => (cell instanceof Node ? cell : el("td", {}, cell)))));
    out.append(body);
    return out;
  }

  const isNumber = (value) => typeof value === "number" && Number.isFinite(value);
  const fixed = (value, digits) => (isNumber(value) ? value.toFixed(digits) : "n/a");
  const percent = (value, digits = 1) => (isNumber(value) ? `${(value * 100).toFixed(digits)}%` : "n/a");
  const scalar = (value) => (isNumber(value) ? String(Number(value.toPrecision(4))) : String(value));

  // ---- models -------------------------------------------------------------------------------

  let champions = {}; // mode -> the champion's entry of GET /v1/models

  async function loadModels() {
    const body = await api("GET", "/v1/models");
    const versions = Array.isArray(body.versions) ? body.versions : [];
    champions = {};
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
        add("model", [config.cell, `hidden ${config.hidden_size}`, `horizon ${config.horizon}`]
          .concat(mode === "ar" ? [`window ${config.window}`] : []).join(", "));
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
      String(v.created || "").slice(0, 19).replace("T", " "),
      v.champion ? "champion" : v.loaded ? "loaded" : "",
      Object.entries(v.metrics || {}).filter(([, x]) => isNumber(x)).map(([k, x]) => `${k} ${scalar(x)}`).join(", "),
    ]);
    $("#versions").replaceWith(Object.assign(table(["version", "mode", "created (UTC)", "status", "metrics"], rows,
      "Every registered version"), { id: "versions" }));
    const ar = champions.ar && champions.ar.config;
    if (ar && isNumber(ar.window)) {
      $("#warmup").value = String(ar.window + 1);
      $("#warmup-hint").textContent = `sent when the sessions open; the ar champion needs ${ar.window + 1} prices before its first forecast`;
    }
  }

  // ---- the comparison report (read defensively: whatever the report holds is shown) -------------

  const METRICS = [
    ["mae", "MAE (%)", 100, 3, "low"],
    ["rmse", "RMSE (%)", 100, 3, "low"],
    ["mae_ratio", "MAE / RW", 1, 3, "low"],
    ["directional_accuracy", "direction (%)", 100, 1, "high"],
    ["pinball", "pinball (%)", 100, 4, "low"],
    ["coverage", "10-90% coverage (%)", 100, 1, "nominal"],
  ];
  const NOMINAL = 0.8;

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
      el("th", { scope: "row" }, m.replaceAll("_", " ")),
      ...columns.map(([key, , scale, digits]) => {
        const x = metrics[m].pooled[horizon][key];
        return el("td", best[key] === m && isNumber(x) ? { class: "best" } : {}, isNumber(x) ? (x * scale).toFixed(digits) : "n/a");
      }),
    ]);
    const days = horizon.replace(/^h/, "");
    return table(["method", ...columns.map((c) => c[1])], rows, `${days} day(s) ahead, all tickers pooled (best in bold)`);
  }

  function costTable(rows) {
    const by = {};
    for (const r of rows) (by[r.history] = by[r.history] || {})[r.method] = r.median_us;
    const lines = Object.keys(by).sort((a, b) => a - b).map((n) => [
      Number(n).toLocaleString("en"), fixed(by[n].latent_step, 0), fixed(by[n].ar_window, 0), fixed(by[n].full_rerun, 0),
    ]);
    return table(["history", "latent step (µs)", "ar window (µs)", "full re-run (µs)"], lines, "Cost of one more forecast");
  }

  async function loadCompare() {
    const body = $("#compare-body");
    let report;
    try {
      report = await api("GET", "/v1/models/compare");
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
    const about = [report.created && `made ${String(report.created).replace("T", " ")}`,
      data.tickers && `${data.source || ""} prices of ${[].concat(data.tickers).join(", ")}`,
      data.first && `${data.first} to ${data.last}`, data.test_start && `test span from ${data.test_start}`]
      .filter(Boolean).join("; ");
    if (about) parts.push(el("p", {}, about));
    if (report.protocol) parts.push(el("p", { class: "hint" }, `Protocol: ${report.protocol}`));
    const verdict = report.verdict;
    if (Array.isArray(verdict) || typeof verdict === "string") {
      parts.push(el("ul", { class: "verdict" }, ...[].concat(verdict).map((line) => el("li", {}, String(line).replaceAll("**", "")))));
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
    const known = new Set(["created", "data", "protocol", "verdict", "metrics", "cost_per_forecast_us", "horizon", "quantiles"]);
    for (const [key, value] of Object.entries(report)) {
      if (known.has(key) || value === null || value === undefined) continue;
      parts.push(el("details", {}, el("summary", {}, key.replaceAll("_", " ")), el("pre", {}, JSON.stringify(value, null, 2))));
    }
    const figures = el("div", { class: "plots" });
    parts.push(figures);
    body.replaceChildren(...parts);
    const listed = await api("GET", "/v1/models/compare/plots");
    for (const name of listed.plots || []) {
      const blob = await api("GET", `/v1/models/compare/plots/${encodeURIComponent(name)}`);
      const title = name.replace(/\.png$/, "").replaceAll("_", " ");
      figures.append(el("figure", {}, el("img", { src: URL.createObjectURL(blob), alt: `comparison plot: ${title}` }),
        el("figcaption", {}, title)));
    }
  }

  // ---- prices for the replay -----------------------------------------------------------------

  let tickers = [];

  async function loadTickers() {
    const body = await api("GET", "/v1/data/tickers");
    tickers = body.tickers || [];
    const select = $("#ticker");
    const chosen = select.value;
    select.replaceChildren(...tickers.map((t) => el("option", { value: t.ticker }, t.ticker)));
    if (chosen) select.value = chosen;
    showSpan(true);
  }

  function showSpan(resetStart) {
    const span = tickers.find((t) => t.ticker === $("#ticker").value);
    if (!span) return;
    const start = $("#start");
    start.min = span.first;
    start.max = span.last;
    if (resetStart || !start.value || start.value < span.first || start.value > span.last) start.value = defaultStart(span);
    $("#ticker-span").textContent = `${span.ticker}: ${span.rows.toLocaleString("en")} trading days, ${span.first} to ${span.last}`;
  }

  function defaultStart(span) {
    // a year after the first day leaves room for the warm-up
    const first = new Date(`${span.first}T00:00:00Z`);
    first.setUTCFullYear(first.getUTCFullYear() + 1);
    const iso = first.toISOString().slice(0, 10);
    return iso < span.last ? iso : span.first;
  }

  // Closes from pasted text or a file: one number a line, or a CSV whose header names a close column.
  function parseCloses(text) {
    const lines = text.split(/\r?\n/).map((line) => line.trim()).filter((line) => line !== "");
    if (!lines.length) throw new Error("no closes: paste some, or choose a file");
    const header = lines[0].split(",").map((h) => h.trim().toLowerCase().replace(/[^a-z]/g, ""));
    const hasHeader = header.some((h) => h !== "" && Number.isNaN(Number(h)));
    let column = -1;
    let dates = -1;
    if (hasHeader) {
      column = ["adjclose", "close", "price"].map((n) => header.indexOf(n)).find((i) => i >= 0);
      if (column === undefined) throw new Error(`line 1: no close column among ${lines[0]}`);
      dates = header.indexOf("date");
    }
    const bars = [];
    lines.slice(hasHeader ? 1 : 0).forEach((line, i) => {
      const fields = line.split(",").map((f) => f.trim());
      const raw = column >= 0 ? fields[column] : fields[fields.length - 1];
      const close = Number(raw);
      const where = `line ${i + (hasHeader ? 2 : 1)}`;
      if (raw === undefined || raw === "" || !Number.isFinite(close) || close <= 0) {
        throw new Error(`${where}: ${JSON.stringify(raw ?? "")} is not a positive price`);
      }
      bars.push(dates >= 0 ? { close, time: fields[dates] } : { close });
    });
    return bars;
  }

  async function replayPrices(count, warmup) {
    if ($("input[name=source]:checked").value === "bundled") {
      const query = new URLSearchParams({ ticker: $("#ticker").value, start: $("#start").value, count, warmup });
      const body = await api("GET", `/v1/data/prices?${query}`);
      return { label: body.ticker, warmup: body.warmup, stream: body.observations };
    }
    const bars = parseCloses($("#csv-text").value);
    if (bars.length <= warmup) throw new Error(`${bars.length} closes: fewer than the ${warmup} warm-up prices and one to stream`);
    return { label: "CSV", warmup: bars.slice(0, warmup), stream: bars.slice(warmup, warmup + count) };
  }

  // ---- one model's track in a replay -----------------------------------------------------------

  class Track {
    constructor(mode, closes) {
      this.mode = mode;
      this.closes = closes; // seq -> realised close, shared by both tracks
      this.forecasts = new Map(); // as_of_seq -> forecast
      this.latencies = [];
      this.session = null;
      this.panel = $(`#panel-${mode}`);
    }

    received(forecast, latency) {
      if (latency !== undefined) this.latencies.push(latency);
      if (!forecast) return;
      this.forecasts.set(forecast.as_of_seq, forecast);
      const [low, high] = band(forecast);
      const median = forecast.price[0][Math.floor(forecast.quantiles.length / 2)];
      // the log of what arrived, which a reader (or a test) can check against the API
      const row = el("tr", { "data-seq": forecast.as_of_seq, "data-price": JSON.stringify(forecast.price) },
        el("td", {}, forecast.as_of_seq), el("td", {}, fixed(median, 2)),
        el("td", {}, `${fixed(forecast.price[0][low], 2)} to ${fixed(forecast.price[0][high], 2)}`),
        el("td", {}, latency === undefined ? "" : fixed(latency, 1)));
      $(".log-body tbody", this.panel).append(row);
    }

    // Coverage of the outer interval and mean pinball loss (on log returns) per horizon, over the
    // forecasts whose target price has arrived.
    scores() {
      const out = [];
      const any = this.forecasts.values().next().value;
      if (!any) return out;
      for (let h = 1; h <= any.horizons.length; h += 1) {
        let n = 0;
        let inside = 0;
        let pinball = 0;
        for (const [seq, f] of this.forecasts) {
          const actual = this.closes.get(seq + h);
          const last = this.closes.get(seq);
          if (actual === undefined || last === undefined) continue;
          const [low, high] = band(f);
          n += 1;
          if (f.price[h - 1][low] <= actual && actual <= f.price[h - 1][high]) inside += 1;
          const y = Math.log(actual / last);
          let loss = 0;
          f.quantiles.forEach((tau, q) => {
            const e = y - f.log_return[h - 1][q];
            loss += Math.max(tau * e, (tau - 1) * e);
          });
          pinball += loss / f.quantiles.length;
        }
        out.push({ h, n, coverage: n ? inside / n : null, pinball: n ? pinball / n : null });
      }
      return out;
    }

    showScores() {
      const any = this.forecasts.values().next().value;
      const [low, high] = any ? band(any) : [0, 0];
      const levels = any ? `${Math.round(any.quantiles[low] * 100)}-${Math.round(any.quantiles[high] * 100)}%` : "10-90%";
      const nominal = any ? percent(any.quantiles[high] - any.quantiles[low], 0) : "80%";
      const rows = this.scores().map((s) => [
        el("th", { scope: "row" }, s.h),
        el("td", { class: "coverage", "data-h": s.h, "data-n": s.n, "data-coverage": s.coverage ?? "" }, percent(s.coverage)),
        el("td", { class: "pinball", "data-h": s.h, "data-pinball": s.pinball ?? "" }, isNumber(s.pinball) ? (s.pinball * 100).toFixed(4) : "n/a"),
        el("td", {}, s.n),
      ]);
      const sorted = [...this.latencies].sort((a, b) => a - b);
      const median = sorted.length ? sorted[Math.floor((sorted.length - 1) / 2)] : null;
      const last = this.latencies[this.latencies.length - 1];
      const latency = el("p", { class: "latency", "data-count": this.latencies.length },
        `latency per forecast: last ${fixed(last, 1)} ms, median ${fixed(median, 1)} ms over ${this.latencies.length}`);
      $(".scores", this.panel).replaceChildren(
        table(["horizon", `${levels} coverage (nominal ${nominal})`, "pinball (%)", "scored"], rows, "Running scores"),
        latency);
    }

    reset() {
      $(".scores", this.panel).replaceChildren();
      $(".chart", this.panel).replaceChildren();
      $(".log-body", this.panel).replaceChildren(table(["as of seq", "median, next", "10-90%, next", "ms"], []));
    }
  }

  // Indexes of the outer quantiles (the interval) in a forecast.
  function band(forecast) {
    return [0, forecast.quantiles.length - 1];
  }

  // ---- drawing -------------------------------------------------------------------------------

  function chartSize(chart) {
    const width = Math.max(CHART.minWidth, Math.round(chart.clientWidth || CHART.width));
    return { width, height: Math.round(Math.min(CHART.maxHeight, Math.max(CHART.minHeight, width * CHART.aspect))) };
  }

  function draw(tracks, closes, first, last) {
    const from = Math.max(first, last - VIEW + 1);
    const horizon = Math.max(...tracks.map((t) => (t.forecasts.size ? t.forecasts.values().next().value.horizons.length : 0)), 0);
    const to = last + horizon;
    // one price scale for both charts, so that their bands compare at a glance
    let low = Infinity;
    let high = -Infinity;
    const seen = (x) => { if (isNumber(x)) { low = Math.min(low, x); high = Math.max(high, x); } };
    for (let s = from; s <= last; s += 1) seen(closes.get(s));
    for (const t of tracks) {
      for (let s = from; s <= last; s += 1) {
        const f = t.forecasts.get(s - 1);
        if (f) { seen(f.price[0][0]); seen(f.price[0][f.quantiles.length - 1]); }
      }
      const latest = t.forecasts.get(last);
      if (latest) latest.price.forEach((row) => { seen(row[0]); seen(row[row.length - 1]); });
    }
    if (!Number.isFinite(low)) return;
    const pad = (high - low) * 0.05 || 1;
    low -= pad;
    high += pad;
    for (const t of tracks) {
      const chart = $(".chart", t.panel);
      // drawn at the size it is shown, so that its labels keep their size on a phone
      const size = chartSize(chart);
      chart.setAttribute("viewBox", `0 0 ${size.width} ${size.height}`);
      const width = size.width - CHART.left - CHART.right;
      const height = size.height - CHART.top - CHART.bottom;
      const x = (s) => CHART.left + (to === from ? 0 : ((s - from) / (to - from)) * width);
      const y = (p) => CHART.top + (1 - (p - low) / (high - low)) * height;
      const point = (s, p) => `${x(s).toFixed(1)},${y(p).toFixed(1)}`;
      const parts = [];
      for (let i = 0; i <= 4; i += 1) {
        const p = low + ((high - low) * i) / 4;
        parts.push(svg("line", { class: "grid", x1: CHART.left, x2: size.width - CHART.right, y1: y(p), y2: y(p) }));
        const label = svg("text", { class: "axis", x: CHART.left - 6, y: y(p) + 4, "text-anchor": "end" });
        label.textContent = p.toFixed(p < 10 ? 2 : 1);
        parts.push(label);
      }
      // the interval each forecast gave for the next price, at the price it was for
      const upper = [];
      const lower = [];
      const misses = [];
      for (let s = from; s <= last; s += 1) {
        const f = t.forecasts.get(s - 1);
        const actual = closes.get(s);
        if (!f || actual === undefined) continue;
        const q = f.price[0];
        upper.push(point(s, q[q.length - 1]));
        lower.push(point(s, q[0]));
        if (actual < q[0] || actual > q[q.length - 1]) misses.push([s, actual]);
      }
      parts.push(svg("polygon", { class: "band", points: upper.concat(lower.reverse()).join(" "), "data-points": upper.length }));
      const line = [];
      for (let s = from; s <= last; s += 1) if (closes.has(s)) line.push(point(s, closes.get(s)));
      parts.push(svg("polyline", { class: "realised", points: line.join(" "), "data-points": line.length }));
      for (const [s, p] of misses) parts.push(svg("circle", { class: "miss", cx: x(s), cy: y(p), r: 2.5 }));
      const latest = t.forecasts.get(last);
      if (latest && closes.has(last)) {
        const top = [point(last, closes.get(last))];
        const bottom = [];
        const middle = [point(last, closes.get(last))];
        latest.price.forEach((row, i) => {
          top.push(point(last + i + 1, row[row.length - 1]));
          bottom.push(point(last + i + 1, row[0]));
          middle.push(point(last + i + 1, row[Math.floor(row.length / 2)]));
        });
        parts.push(svg("polygon", { class: "fan", points: top.concat(bottom.reverse()).join(" "), "data-horizons": latest.price.length }));
        parts.push(svg("polyline", { class: "median", points: middle.join(" ") }));
      }
      const dates = [[from, "start"], [last, "end"]];
      for (const [s, anchor] of dates) {
        const label = svg("text", { class: "axis", x: x(s), y: size.height - 8, "text-anchor": anchor });
        label.textContent = closes.label(s);
        parts.push(label);
      }
      chart.replaceChildren(...parts);
    }
  }

  // ---- the replay ----------------------------------------------------------------------------

  function setRunning(running, paused = false) {
    $("#start-button").disabled = running;
    $("#pause-button").disabled = !running;
    $("#stop-button").disabled = !running;
    $("#pause-button").textContent = paused ? "Resume" : "Pause";
    $("#replay").dataset.state = running ? (paused ? "paused" : "running") : run && run.done ? "done" : "idle";
  }

  function status(text) {
    $("#replay-status").textContent = text;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  async function startReplay() {
    clearError();
    const count = Number($("#count").value);
    const warmup = Number($("#warmup").value);
    if (!Number.isInteger(count) || count < 1) throw new Error("prices to stream: a whole number, at least 1");
    if (!Number.isInteger(warmup) || warmup < 0) throw new Error("warm-up prices: a whole number, at least 0");
    const prices = await replayPrices(count, warmup);
    if (!prices.stream.length) throw new Error("no prices to stream after the warm-up");
    const closes = new Map();
    const labels = new Map();
    prices.warmup.concat(prices.stream).forEach((bar, seq) => {
      closes.set(seq, bar.close);
      labels.set(seq, bar.time || `#${seq}`);
    });
    const realised = new Map(prices.warmup.map((bar, seq) => [seq, bar.close]));
    realised.label = (seq) => labels.get(seq) || "";
    const tracks = MODES.map((mode) => new Track(mode, realised));
    tracks.forEach((t) => t.reset());
    const me = { tracks, paused: false, stopped: false, done: false, resume: null };
    run = me;
    setRunning(true);
    status(`Opening an ar and a latent session on ${prices.label}, warmed on ${prices.warmup.length} prices.`);
    try {
      const opened = await Promise.all(tracks.map((t) =>
        api("POST", "/v1/sessions", { mode: t.mode, history: prices.warmup, ticker: prices.label })));
      opened.forEach((reply, i) => {
        tracks[i].session = reply.session_id;
        $(`#panel-${tracks[i].mode} .version`).textContent = reply.model.version;
        tracks[i].received(reply.forecast);
      });
      const first = prices.warmup.length;
      let scheduled = false;
      const redraw = (last) => {
        redrawLast = () => draw(tracks, realised, 0, last);
        if (scheduled) return;
        scheduled = true;
        requestAnimationFrame(() => {
          scheduled = false;
          redrawLast();
          tracks.forEach((t) => t.showScores());
        });
      };
      for (let i = 0; i < prices.stream.length && !me.stopped; i += 1) {
        const began = performance.now();
        const seq = first + i;
        const bar = prices.stream[i];
        await Promise.all(tracks.map(async (t) => {
          const sent = performance.now();
          const reply = await api("POST", `/v1/sessions/${encodeURIComponent(t.session)}/observations`, { seq, observations: [bar] });
          t.received(reply.forecast, performance.now() - sent);
        }));
        realised.set(seq, closes.get(seq));
        redraw(seq);
        status(`${prices.label}: ${i + 1} of ${prices.stream.length} prices streamed (${realised.label(seq)}).`);
        const speed = Number($("#speed").value);
        if (speed > 0) await sleep(Math.max(0, 1000 / speed - (performance.now() - began)));
        if (me.paused) await new Promise((resolve) => { me.resume = resolve; });
      }
      me.done = !me.stopped;
      await new Promise((resolve) => requestAnimationFrame(resolve));
      status(`${prices.label}: ${realised.size - first} of ${prices.stream.length} prices streamed; ${me.stopped ? "stopped" : "done"}.`);
    } finally {
      await closeSessions(tracks);
      setRunning(false);
    }
  }

  async function closeSessions(tracks) {
    await Promise.all(tracks.filter((t) => t.session).map(async (t) => {
      try {
        await api("DELETE", `/v1/sessions/${encodeURIComponent(t.session)}`);
      } catch (error) {
        if (!(error instanceof ApiError && error.status === 404)) showError(plain(error, `Closing the ${t.mode} session`));
      }
    }));
  }

  // ---- wiring --------------------------------------------------------------------------------

  async function loadAll() {
    clearError();
    const results = await Promise.allSettled([loadModels(), loadTickers(), loadCompare()]);
    const doing = ["Loading the models", "Loading the bundled tickers", "Loading the comparison"];
    const failed = results.map((r, i) => [r, doing[i]]).filter(([r]) => r.status === "rejected");
    if (failed.length) showError(failed.map(([r, what]) => plain(r.reason, what)).filter((t, i, all) => all.indexOf(t) === i).join(" "));
    document.body.dataset.loaded = failed.length ? "error" : "ok";
  }

  function showSource() {
    const bundled = $("input[name=source]:checked").value === "bundled";
    $("#bundled-fields").hidden = !bundled;
    $("#csv-fields").hidden = bundled;
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("#key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      apiKey = $("#api-key").value.trim();
      loadAll();
    });
    $("#replay-form").addEventListener("submit", (event) => {
      event.preventDefault();
      if (["running", "paused"].includes($("#replay").dataset.state)) return;
      startReplay().catch((error) => {
        showError(plain(error, "The replay"));
        status("The replay stopped on an error.");
      });
    });
    $("#pause-button").addEventListener("click", () => {
      if (!run) return;
      run.paused = !run.paused;
      if (!run.paused && run.resume) run.resume();
      setRunning(true, run.paused);
    });
    $("#stop-button").addEventListener("click", () => {
      if (!run) return;
      run.stopped = true;
      run.paused = false;
      if (run.resume) run.resume();
    });
    $("#ticker").addEventListener("change", () => showSpan(false));
    window.addEventListener("resize", () => requestAnimationFrame(() => redrawLast()));
    for (const radio of document.querySelectorAll("input[name=source]")) radio.addEventListener("change", showSource);
    $("#csv-file").addEventListener("change", async () => {
      const file = $("#csv-file").files[0];
      if (file) $("#csv-text").value = await file.text();
    });
    MODES.forEach((mode) => new Track(mode, new Map()).reset());
    loadAll();
  });
})();
