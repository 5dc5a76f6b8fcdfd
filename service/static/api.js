// Talking to the service: every request of the page, with the API key held in memory only,
// and what went wrong said in plain words with the service's own message.
import { $ } from "./dom.js";

export const MODES = ["ar", "latent"];
let apiKey = "";

export function setKey(key) {
  apiKey = key;
}

export function currentKey() {
  return apiKey;
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function api(method, path, body, key = apiKey) {
  const headers = { Accept: "application/json" };
  if (key) headers["X-API-Key"] = key;
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
export function plain(error, doing) {
  if (!(error instanceof ApiError)) return `${doing} failed: ${error.message || error}`;
  const said = error.message.replace(/\.$/, "");
  switch (error.status) {
    case 0:
      return `${doing} failed: ${said}.`;
    case 401:
      return `The service needs a valid API key (${said}). Enter your key above and press Use key.`;
    case 403:
      return `Your API key may not do this (${said}).`;
    case 404:
      return `${doing}: not found (${said}).`;
    case 409:
      return `${doing}: the service's record moved on (${said}).`;
    case 413:
      return `${doing}: too much at once for the service (${said}).`;
    case 422:
      return `${doing}: the service refused the data (${said}).`;
    case 429:
      return `${doing}: your key holds too many open sessions (${said}). Close some, or wait for them to expire.`;
    case 503:
      return `${doing}: the service cannot serve now (${said}). Try again shortly.`;
    default:
      return `${doing} failed with HTTP ${error.status} (${said}).`;
  }
}

export function showError(text) {
  const box = $("#error");
  box.textContent = text;
  box.hidden = false;
}

export function clearError() {
  const box = $("#error");
  box.textContent = "";
  box.hidden = true;
}
