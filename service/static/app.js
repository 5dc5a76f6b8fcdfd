// The latentcast page: the models, the last comparison, and a live ar vs latent replay.
// ES modules, no build step, no third-party code; every figure comes from the public /v1 API
// (docs/page.md). The API key lives in this page's memory only (api.js).
import { clearError, plain, setKey, showError } from "./api.js";
import { $ } from "./dom.js";
import {
  clearPanels,
  isRunning,
  loadTickers,
  redrawLatest,
  showSpan,
  startReplay,
  status,
  stopReplay,
  togglePause,
} from "./replay.js";
import { loadLive } from "./live.js";
import { loadCompare, loadModels, loadPromotions } from "./report.js";

async function loadAll() {
  clearError();
  const doing = [
    "Loading the models",
    "Loading the bundled tickers",
    "Loading the comparison",
    "Loading the promotions",
    "Loading the live quality",
  ];
  const models = loadModels();
  const loads = [models, loadTickers(), loadCompare(models), loadPromotions(), loadLive()];
  const results = await Promise.allSettled(loads);
  const failed = results.map((result, i) => [result, doing[i]]).filter(([result]) => result.status === "rejected");
  // one 401 is said once, not once per section
  const said = [...new Set(failed.map(([result, what]) => plain(result.reason, what)))];
  if (said.length) showError(said.join(" "));
  document.body.dataset.loaded = failed.length ? "error" : "ok";
}

function showSource() {
  const bundled = $("input[name=source]:checked").value === "bundled";
  $("#bundled-fields").hidden = !bundled;
  $("#csv-fields").hidden = bundled;
}

$("#key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  setKey($("#api-key").value.trim());
  loadAll();
});
$("#replay-form").addEventListener("submit", (event) => {
  event.preventDefault();
  if (isRunning()) return;
  startReplay().catch((error) => {
    showError(plain(error, "The replay"));
    status("The replay stopped on an error.");
  });
});
$("#live-refresh").addEventListener("click", () => {
  clearError();
  loadLive().catch((error) => showError(plain(error, "Loading the live quality")));
});
$("#pause-button").addEventListener("click", togglePause);
$("#stop-button").addEventListener("click", stopReplay);
$("#ticker").addEventListener("change", () => showSpan(false));
for (const radio of document.querySelectorAll("input[name=source]")) radio.addEventListener("change", showSource);
$("#csv-file").addEventListener("change", async () => {
  const file = $("#csv-file").files[0];
  if (file) $("#csv-text").value = await file.text();
});
window.addEventListener("resize", redrawLatest);
clearPanels();
loadAll();
