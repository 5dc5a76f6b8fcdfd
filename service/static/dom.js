// Elements (HTML, SVG, tables) built from data, and the number formats the page shows.

export const $ = (selector, root = document) => root.querySelector(selector);
const SVG = "http://www.w3.org/2000/svg";

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

export function svg(tag, attributes = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

export function table(headers, rows, caption) {
  const out = el("table");
  if (caption) out.append(el("caption", {}, caption));
  out.append(el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { scope: "col" }, h)))));
  const body = el("tbody");
  for (const row of rows)
    body.append(el("tr", {}, ...row.map((cell) => (cell instanceof Node ? cell : el("td", {}, cell)))));
  out.append(body);
  return out;
}

export const isNumber = (value) => typeof value === "number" && Number.isFinite(value);
export const fixed = (value, digits) => (isNumber(value) ? value.toFixed(digits) : "n/a");
export const percent = (value, digits = 1) => (isNumber(value) ? `${(value * 100).toFixed(digits)}%` : "n/a");
export const scalar = (value) => (isNumber(value) ? String(Number(value.toPrecision(4))) : String(value));
