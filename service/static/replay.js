// The live replay: bundled or pasted prices streamed into an ar and a latent session, one
// price at a time, with each model's running scores and latency.
import { ApiError, MODES, api, clearError, currentKey, plain, showError } from "./api.js";
import { draw } from "./chart.js";
import { $, el, fixed, isNumber, percent, table } from "./dom.js";

let run = null; // the replay in progress, if any
let redrawLast = () => {}; // draws the latest replay again (after a resize)

let tickers = [];

export async function loadTickers() {
  const body = await api("GET", "/v1/data/tickers");
  tickers = body.tickers || [];
  const select = $("#ticker");
  const chosen = select.value;
  select.replaceChildren(...tickers.map((t) => el("option", { value: t.ticker }, t.ticker)));
  if (chosen) select.value = chosen;
  showSpan(true);
}

export function showSpan(resetStart) {
  const span = tickers.find((t) => t.ticker === $("#ticker").value);
  if (!span) return;
  const start = $("#start");
  start.min = span.first;
  start.max = span.last;
  if (resetStart || !start.value || start.value < span.first || start.value > span.last)
    start.value = defaultStart(span);
  $("#ticker-span").textContent =
    `${span.ticker}: ${span.rows.toLocaleString("en")} trading days, ${span.first} to ${span.last}`;
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
  const lines = text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== "");
  if (!lines.length) throw new Error("no closes: paste some, or choose a file");
  const header = lines[0].split(",").map((h) =>
    h
      .trim()
      .toLowerCase()
      .replace(/[^a-z]/g, ""),
  );
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
  if (bars.length <= warmup)
    throw new Error(`${bars.length} closes: fewer than the ${warmup} warm-up prices and one to stream`);
  return { label: "CSV", warmup: bars.slice(0, warmup), stream: bars.slice(warmup, warmup + count) };
}

class Track {
  constructor(mode, closes) {
    this.mode = mode;
    this.closes = closes; // seq -> realised close, shared by both tracks
    this.forecasts = new Map(); // as_of_seq -> forecast
    this.latencies = [];
    this.session = null;
    this.panel = $(`#panel-${mode}`);
  }

  // A reply: its forecast, or (null) how many more prices the session needs before its first one.
  received(reply, latency) {
    if (latency !== undefined) this.latencies.push(latency);
    const { forecast, needs } = reply;
    const note = $(".needs", this.panel);
    note.hidden = Boolean(forecast);
    if (!forecast) {
      note.textContent = needs ? `needs ${needs} more price${needs === 1 ? "" : "s"} before its first forecast` : "";
      return;
    }
    this.forecasts.set(forecast.as_of_seq, forecast);
    const [low, high] = band(forecast);
    const median = forecast.price[0][Math.floor(forecast.quantiles.length / 2)];
    // the log of what arrived, which a reader (or a test) can check against the API
    const row = el(
      "tr",
      { "data-seq": forecast.as_of_seq, "data-price": JSON.stringify(forecast.price) },
      el("td", {}, forecast.as_of_seq),
      el("td", {}, fixed(median, 2)),
      el("td", {}, `${fixed(forecast.price[0][low], 2)} to ${fixed(forecast.price[0][high], 2)}`),
      el("td", {}, latency === undefined ? "" : fixed(latency, 1)),
    );
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
      el(
        "td",
        { class: "coverage", "data-h": s.h, "data-n": s.n, "data-coverage": s.coverage ?? "" },
        percent(s.coverage),
      ),
      el(
        "td",
        { class: "pinball", "data-h": s.h, "data-pinball": s.pinball ?? "" },
        isNumber(s.pinball) ? (s.pinball * 100).toFixed(4) : "n/a",
      ),
      el("td", {}, s.n),
    ]);
    const sorted = [...this.latencies].sort((a, b) => a - b);
    const median = sorted.length ? sorted[Math.floor((sorted.length - 1) / 2)] : null;
    const last = this.latencies[this.latencies.length - 1];
    const latency = el(
      "p",
      { class: "latency", "data-count": this.latencies.length },
      `latency per forecast: last ${fixed(last, 1)} ms, median ${fixed(median, 1)} ms over ${this.latencies.length}`,
    );
    $(".scores", this.panel).replaceChildren(
      table(["horizon", `${levels} coverage (nominal ${nominal})`, "pinball (%)", "scored"], rows, "Running scores"),
      latency,
    );
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

function setRunning(running, paused = false) {
  $("#start-button").disabled = running;
  $("#pause-button").disabled = !running;
  $("#stop-button").disabled = !running;
  $("#pause-button").textContent = paused ? "Resume" : "Pause";
  $("#replay").dataset.state = running ? (paused ? "paused" : "running") : run && run.done ? "done" : "idle";
}

export function status(text) {
  $("#replay-status").textContent = text;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export async function startReplay() {
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
  // a replay keeps the key it started with: its sessions belong to that key
  const key = currentKey();
  const me = { tracks, paused: false, stopped: false, done: false, resume: null };
  run = me;
  setRunning(true);
  status(`Opening an ar and a latent session on ${prices.label}, warmed on ${prices.warmup.length} prices.`);
  try {
    // settled, not all: a session that opened is closed even when the other did not
    const opened = await Promise.allSettled(
      tracks.map((t) =>
        api("POST", "/v1/sessions", { mode: t.mode, history: prices.warmup, ticker: prices.label }, key),
      ),
    );
    opened.forEach((result, i) => {
      if (result.status === "fulfilled") tracks[i].session = result.value.session_id;
    });
    const refused = opened.find((result) => result.status === "rejected");
    if (refused) throw refused.reason;
    opened.forEach(({ value: reply }, i) => {
      $(`#panel-${tracks[i].mode} .version`).textContent = reply.model.version;
      tracks[i].received(reply);
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
      await Promise.all(
        tracks.map(async (t) => {
          const sent = performance.now();
          const reply = await api(
            "POST",
            `/v1/sessions/${encodeURIComponent(t.session)}/observations`,
            { seq, observations: [bar] },
            key,
          );
          t.received(reply, performance.now() - sent);
        }),
      );
      realised.set(seq, closes.get(seq));
      redraw(seq);
      status(`${prices.label}: ${i + 1} of ${prices.stream.length} prices streamed (${realised.label(seq)}).`);
      const speed = Number($("#speed").value);
      if (speed > 0) await sleep(Math.max(0, 1000 / speed - (performance.now() - began)));
      if (me.paused)
        await new Promise((resolve) => {
          me.resume = resolve;
        });
    }
    me.done = !me.stopped;
    await new Promise((resolve) => requestAnimationFrame(resolve));
    const streamed = `${realised.size - first} of ${prices.stream.length} prices streamed`;
    status(`${prices.label}: ${streamed}; ${me.stopped ? "stopped" : "done"}.`);
  } finally {
    await closeSessions(tracks, key);
    setRunning(false);
  }
}

async function closeSessions(tracks, key) {
  await Promise.all(
    tracks
      .filter((t) => t.session)
      .map(async (t) => {
        try {
          await api("DELETE", `/v1/sessions/${encodeURIComponent(t.session)}`, undefined, key);
        } catch (error) {
          if (!(error instanceof ApiError && error.status === 404))
            showError(plain(error, `Closing the ${t.mode} session`));
        }
      }),
  );
}

export function togglePause() {
  if (!run || run.done) return;
  run.paused = !run.paused;
  if (!run.paused && run.resume) run.resume();
  setRunning(true, run.paused);
}

export function stopReplay() {
  if (!run) return;
  run.stopped = true;
  run.paused = false;
  if (run.resume) run.resume();
}

export function redrawLatest() {
  requestAnimationFrame(() => redrawLast());
}

export function isRunning() {
  return ["running", "paused"].includes($("#replay").dataset.state);
}

export function clearPanels() {
  MODES.forEach((mode) => new Track(mode, new Map()).reset());
}
