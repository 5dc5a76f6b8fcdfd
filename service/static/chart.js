// The replay's charts: hand-written SVG, one price scale for both models.
import { $, isNumber, svg } from "./dom.js";

const VIEW = 250; // prices shown in a chart: the latest ones
const CHART = {
  width: 640,
  minWidth: 280,
  aspect: 0.44,
  minHeight: 210,
  maxHeight: 300,
  left: 56,
  right: 12,
  top: 12,
  bottom: 28,
};

function chartSize(chart) {
  const width = Math.max(CHART.minWidth, Math.round(chart.clientWidth || CHART.width));
  return { width, height: Math.round(Math.min(CHART.maxHeight, Math.max(CHART.minHeight, width * CHART.aspect))) };
}

export function draw(tracks, closes, first, last) {
  const from = Math.max(first, last - VIEW + 1);
  const horizon = Math.max(
    ...tracks.map((t) => (t.forecasts.size ? t.forecasts.values().next().value.horizons.length : 0)),
    0,
  );
  const to = last + horizon;
  // one price scale for both charts, so that their bands compare at a glance
  let low = Infinity;
  let high = -Infinity;
  const seen = (x) => {
    if (isNumber(x)) {
      low = Math.min(low, x);
      high = Math.max(high, x);
    }
  };
  for (let s = from; s <= last; s += 1) seen(closes.get(s));
  for (const t of tracks) {
    for (let s = from; s <= last; s += 1) {
      const f = t.forecasts.get(s - 1);
      if (f) {
        seen(f.price[0][0]);
        seen(f.price[0][f.quantiles.length - 1]);
      }
    }
    const latest = t.forecasts.get(last);
    if (latest)
      latest.price.forEach((row) => {
        seen(row[0]);
        seen(row[row.length - 1]);
      });
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
    parts.push(
      svg("polygon", { class: "band", points: upper.concat(lower.reverse()).join(" "), "data-points": upper.length }),
    );
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
      parts.push(
        svg("polygon", {
          class: "fan",
          points: top.concat(bottom.reverse()).join(" "),
          "data-horizons": latest.price.length,
        }),
      );
      parts.push(svg("polyline", { class: "median", points: middle.join(" ") }));
    }
    const dates = [
      [from, "start"],
      [last, "end"],
    ];
    for (const [s, anchor] of dates) {
      const label = svg("text", { class: "axis", x: x(s), y: size.height - 8, "text-anchor": anchor });
      label.textContent = closes.label(s);
      parts.push(label);
    }
    chart.replaceChildren(...parts);
  }
}
