"""The README's curl session (in both modes) and docs/streaming.md's client example, run against a real
``latentcast serve`` on untrained models of the default sizes: the replies have the shapes the docs show."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from data import sources
from data.features import build_series, fit_scaler, split_dates
from models.checkpoint import make_checkpoint
from models.config import ModelConfig
from models.forecaster import Forecaster
from tests.service.test_e2e import env
from tests.support.processes import ServiceProcess
from training.registry import Registry

pytestmark = pytest.mark.slow  # a server process: see the "slow" marker in pyproject.toml

ROOT = Path(__file__).resolve().parents[2]
KEY = "docs-example-key-0123456789"
# `$ curl -s localhost:8000/PATH ... -d 'BODY'`, the command over one or more lines
CURL = re.compile(r"^\$ curl -s localhost:8000(?P<path>\S+).*?-d '(?P<body>[^']*)'", re.MULTILINE | re.DOTALL)


def fenced(doc: str, language: str, containing: str) -> str:
    """The first fenced block of ``doc`` in ``language`` ("" for none) that contains ``containing``."""
    blocks: list[tuple[str, list[str]]] = []
    inside = False
    for line in (ROOT / doc).read_text().splitlines():
        if line.startswith("```"):
            if not inside:
                blocks.append((line[3:].strip(), []))
            inside = not inside
        elif inside:
            blocks[-1][1].append(line)
    return next("\n".join(lines) for lang, lines in blocks if lang == language and containing in "\n".join(lines))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``latentcast serve`` with a key, on champions of the default ModelConfig (untrained: the shapes count)."""
    registry = Registry(tmp_path_factory.mktemp("artifacts"))
    series = build_series(sources.bundled(), ("returns",), ModelConfig().horizon)
    scaler = fit_scaler(series, split_dates(series), ("returns",))
    span = {"source": "bundled", "first": "2000-03-01", "last": "2013-03-01"}
    for mode in ("latent", "ar"):
        checkpoint = make_checkpoint(Forecaster(ModelConfig(mode=mode)), scaler, {"val_loss": 1.0}, span)
        registry.promote(registry.register(checkpoint).version)
    log = tmp_path_factory.mktemp("logs") / "serve.log"
    with ServiceProcess(env(registry, api_keys=KEY), log) as process:
        yield process


def assert_forecast(forecast: dict[str, Any], as_of_seq: int) -> None:
    config = ModelConfig()
    assert forecast["as_of_seq"] == as_of_seq
    assert forecast["horizons"] == list(range(1, config.horizon + 1))
    assert forecast["quantiles"] == list(config.quantiles)
    for name in ("log_return", "price"):
        rows = forecast[name]
        assert len(rows) == config.horizon and all(len(r) == len(config.quantiles) for r in rows)
        assert all(r == sorted(r) for r in rows)  # quantiles increase


@pytest.mark.parametrize("mode", ["latent", "ar"])
def test_the_readmes_curl_session_in_both_modes(server: ServiceProcess, mode: str):
    session = fenced("README.md", "sh", "/observations")
    calls = [(m["path"], json.loads(m["body"])) for m in CURL.finditer(session)]
    assert [path for path, _ in calls] == ["/v1/sessions", "/v1/sessions/$SID/observations"]
    (open_path, opened), (append_path, append) = calls
    assert opened["mode"] == "latent"
    history = len(opened["history"])
    with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}) as http:
        reply = http.post(open_path, json={**opened, "mode": mode})
        assert reply.status_code == 201, reply.text
        first = reply.json()
        assert set(first) >= {"session_id", "model", "next_seq", "forecast"}
        assert first["model"]["mode"] == mode and first["next_seq"] == history
        url = append_path.replace("$SID", first["session_id"])
        replies = [http.post(url, json=append) for _ in range(2)]  # sent twice: the same reply, applied once
        assert [r.status_code for r in replies] == [200, 200] and replies[0].json() == replies[1].json()
        second = replies[0].json()
        assert second["next_seq"] == history + 1
        if mode == "latent":
            assert_forecast(first["forecast"], history - 1)
            assert_forecast(second["forecast"], history)
            return
        # ar: null until the session holds window + 1 prices, the number the README gives
        needed = ModelConfig().window + 1
        assert f"until it holds {needed} prices" in " ".join((ROOT / "README.md").read_text().split())
        assert first["forecast"] is None and second["forecast"] is None
        assert (first["needs"], second["needs"]) == (needed - history, needed - history - 1)
        assert f"({needed - history} after these" in " ".join((ROOT / "README.md").read_text().split())
        closes = [opened["history"][-1]] * (needed - history - 2)
        short = http.post(url, json={"seq": history + 1, "observations": closes}).json()
        assert short["next_seq"] == needed - 1 and short["forecast"] is None
        last = http.post(url, json={"seq": needed - 1, "observations": [append["observations"][0]]}).json()
        assert_forecast(last["forecast"], needed - 1)


def test_the_client_example_of_streaming_md(server: ServiceProcess, monkeypatch, capsys):
    example = fenced("docs/streaming.md", "python", "ClientSettings(")
    assert 'ClientSettings("http://127.0.0.1:8000", api_key=os.environ.get("LATENTCAST_API_KEY"))' in example
    monkeypatch.setenv("LATENTCAST_API_KEY", KEY)
    exec(example.replace("http://127.0.0.1:8000", server.url), {})  # the doc's own code
    lines = capsys.readouterr().out.splitlines()
    shown = fenced("docs/streaming.md", "", "IBM 5 [").splitlines()
    number = r"-?\d+\.\d+(e-?\d+)?"
    prices = rf"\[{number}, {number}, {number}\]"  # the test models' three quantiles, as the doc shows
    assert len(lines) == len(shown) == 4
    assert re.fullmatch(rf"IBM 5 {prices}", lines[0]) and re.fullmatch(rf"MSFT 5 {prices}", lines[1])
    for line in lines[2:]:
        assert re.fullmatch(rf"[A-Za-z0-9_-]{{8}} 6 {prices}", line), line
