"""The service's answers that the Python client's own tests replay: made here, from the real app over a socket.

``clients/python/tests`` runs in a venv without the service (no torch), so its
tests answer the client with replies recorded from the service. Each file of
``clients/python/tests/recordings`` holds requests as the client sends them
(``http``: method, path, headers, body; ``stream``: the WebSocket's frames or
its refused handshake) and the service's answers. ``answered`` sends those
requests to the real app and puts its answers beside them, so that the files
say what the service answers today: ``tests/service/test_client_recordings.py``
fails when they differ, and

    .venv/bin/python -m tests.service.client_recordings

writes them again. The ids the service draws (sessions, model versions) are
written as ``session-1``, ``version-1``, ... in the order they first appear,
and the times it reads from its clock (a session's ``created``) as ``clock``;
the forecasts' figures are compared to a relative 1e-6 (the arithmetic may
differ in its last bits from one machine to another).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from service.config import Settings
from service.http.app import create_app
from service.http.connections import LimitedHttpProtocol, LimitedWebSocketProtocol
from tests.factories import tiny_checkpoint
from training.registry import Registry

RECORDINGS = Path(__file__).resolve().parents[2] / "clients" / "python" / "tests" / "recordings"
COMMAND = ".venv/bin/python -m tests.service.client_recordings"
PLACEHOLDERS = {"session_id": "session", "version": "version"}  # a drawn id's key, and its placeholder's stem
CLOCK = ("created", "updated")  # the keys of times read from the clock, recorded as "clock"


class Ids:
    """The ids the service drew, each with the placeholder it is recorded as."""

    def __init__(self) -> None:
        self.real: dict[str, str] = {}  # placeholder -> drawn id

    def learn(self, body: Any) -> None:
        for key, value in _keyed(body):
            if key in PLACEHOLDERS and isinstance(value, str) and value not in self.real.values():
                stem = PLACEHOLDERS[key]
                self.real[f"{stem}-{sum(p.startswith(stem) for p in self.real) + 1}"] = value

    def to_real(self, value: Any) -> Any:
        return _replaced(value, self.real)

    def to_placeholders(self, value: Any) -> Any:
        return _replaced(value, {real: placeholder for placeholder, real in self.real.items()})


def answered(recording: Mapping[str, Any], url: str) -> dict[str, Any]:
    """``recording`` with the answers of the service at ``url`` to its requests."""
    out = copy.deepcopy(dict(recording))
    ids = Ids()
    with httpx.Client(base_url=url, timeout=30) as client:
        for exchange in out.get("http", []):
            request = ids.to_real(exchange["request"])
            body = request.get("body")
            response = client.request(
                request["method"],
                request["path"],
                content=None if body is None else json.dumps(body),
                headers=request.get("headers", {}) | ({"Content-Type": "application/json"} if body is not None else {}),
            )
            reply = _clock_hidden(response.json())
            ids.learn(reply)
            exchange["response"] = {"status": response.status_code, "body": ids.to_placeholders(reply)}
    if "stream" in out:
        stream = out["stream"]
        headers = ids.to_real(stream.get("headers", {}))
        try:
            with connect(url.replace("http://", "ws://") + "/v1/stream", additional_headers=headers) as ws:
                for frame in stream["frames"]:
                    ws.send(json.dumps(ids.to_real(frame["send"])))
                    reply = json.loads(ws.recv(timeout=30))
                    ids.learn(reply)
                    frame["receive"] = ids.to_placeholders(reply)
        except InvalidStatus as refused:
            stream["refused"] = {"status": refused.response.status_code, "body": json.loads(refused.response.body)}
    return out


@contextlib.contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """The URL of the app on ``settings``, served by uvicorn on a thread of this process while the block runs."""
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=0,
        log_level="warning",
        http=LimitedHttpProtocol,  # the protocols `latentcast serve` runs
        ws=LimitedWebSocketProtocol,
        ws_max_size=settings.max_body_bytes,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="recorded-service")
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the app did not start: its log above says why")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join()


def registry_of_tests(root: Path) -> Registry:
    """Champions of both modes, tiny, as tests/service/conftest.py makes them."""
    registry = Registry(root)
    for mode in ("latent", "ar"):
        registry.promote(registry.register(tiny_checkpoint(mode, seed=1)).version)
    return registry


def settings_of(recording: Mapping[str, Any], registry: Registry) -> Settings:
    return Settings(**{"artifacts": registry.root, "registry_poll_seconds": 0, **recording.get("settings", {})})


def same(recorded: Any, answered: Any, where: str = "") -> list[str]:
    """Where ``answered`` differs from ``recorded``: exactly, but for floats, to a relative 1e-6."""
    if isinstance(recorded, float) and isinstance(answered, float):
        close = math.isclose(recorded, answered, rel_tol=1e-6, abs_tol=1e-12)
        return [] if close or (math.isnan(recorded) and math.isnan(answered)) else [f"{where}: {recorded}"]
    if isinstance(recorded, dict) and isinstance(answered, dict):
        if recorded.keys() != answered.keys():
            return [f"{where}: keys {sorted(recorded)} recorded, {sorted(answered)} answered"]
        return [d for key in recorded for d in same(recorded[key], answered[key], f"{where}.{key}")]
    if isinstance(recorded, list) and isinstance(answered, list) and len(recorded) == len(answered):
        return [d for i, (r, a) in enumerate(zip(recorded, answered, strict=True)) for d in same(r, a, f"{where}[{i}]")]
    return [] if recorded == answered and type(recorded) is type(answered) else [f"{where}: {recorded!r}"]


def write(path: Path, recording: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(recording, indent=1) + "\n")


def _clock_hidden(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "clock" if k in CLOCK else _clock_hidden(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clock_hidden(v) for v in value]
    return value


def _keyed(value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield key, inner
            yield from _keyed(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _keyed(inner)


def _replaced(value: Any, names: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        for old, new in sorted(names.items(), key=lambda pair: -len(pair[0])):  # session-10 before session-1
            value = value.replace(old, new)
        return value
    if isinstance(value, dict):
        return {_replaced(k, names): _replaced(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_replaced(v, names) for v in value]
    return value


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        registry = registry_of_tests(Path(folder))
        for path in sorted(RECORDINGS.glob("*.json")):
            recording = json.loads(path.read_text())
            with serving(settings_of(recording, registry)) as url:
                write(path, answered(recording, url))
            print(f"{path.name}: written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
