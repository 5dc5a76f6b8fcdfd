"""The docker-compose deployment: the file is valid, and its services' commands work as processes.

No Docker engine runs here, so the containers' exact commands run as local
processes: the api command against a real redis-server, and the scheduler
with a one-minute cron, while a client streams requests.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from service.config import Settings
from service.jobs.scheduler import heartbeat_is_fresh
from tests.factories import tiny_checkpoint
from tests.support.processes import ROOT, ServiceProcess, debian_tool, free_port
from training.jobs import JobStore
from training.registry import Registry

COMPOSE = ROOT / "docker-compose.yml"
PICKUP_SECONDS = 180.0  # the next minute boundary, a retrain of tiny models, a poll


def docker_compose() -> str:
    return debian_tool("docker-compose", "docker-compose", "the deployment tests")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The compose file as ``docker-compose config`` resolves it (anchors merged, variables filled)."""
    done = subprocess.run(
        [docker_compose(), "-f", str(COMPOSE), "config"], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr
    resolved: dict[str, Any] = yaml.safe_load(done.stdout)
    return resolved


def test_compose_has_the_services_volumes_and_health_checks(compose):
    services = compose["services"]
    assert set(services) == {"proxy", "api", "scheduler", "redis"}
    redis = services["redis"]
    assert redis["command"][:3] == ["redis-server", "--appendonly", "yes"]
    assert any(v.endswith(":/data:rw") or v.endswith(":/data") for v in _volumes(redis))
    for name in ("api", "scheduler"):
        service = services[name]
        assert "artifacts:/artifacts" in " ".join(_volumes(service))
        assert service["environment"]["LATENTCAST_ARTIFACTS"] == "/artifacts"
        assert service["environment"]["LATENTCAST_STORE"] == "redis"
        assert service["environment"]["LATENTCAST_REDIS_URL"] == "redis://redis:6379/0"
    for name in ("proxy", "api", "scheduler", "redis"):
        assert services[name]["healthcheck"]["test"][0] == "CMD", name
    assert services["api"]["depends_on"] == {"redis": {"condition": "service_healthy"}}
    # clients reach the replicas through the proxy only, with deploy/nginx.conf as its configuration
    proxy = services["proxy"]
    assert "ports" not in services["api"] and services["api"]["deploy"]["replicas"] >= 2
    assert [p if isinstance(p, str) else f"{p['published']}:{p['target']}" for p in proxy["ports"]] == ["8000:8080"]
    assert any(v.endswith("deploy/nginx.conf:/etc/nginx/nginx.conf:ro") for v in _volumes(proxy))
    assert proxy["depends_on"] == {"api": {"condition": "service_healthy"}}
    assert services["scheduler"]["depends_on"] == {"api": {"condition": "service_healthy"}}
    assert set(compose["volumes"]) == {"artifacts", "redis-data"}


def test_the_image_runs_as_a_non_root_user_with_a_health_check():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    assert "torch==2.13.0" in dockerfile and "whl/cpu" in dockerfile
    assert "\nUSER latentcast\n" in dockerfile and "\nHEALTHCHECK " in dockerfile
    # training's fused GRU is built as the user who trains, into that user's extension cache
    assert dockerfile.index("\nUSER latentcast\n") < dockerfile.index("\nRUN python -m models.fused_gru\n")
    assert "install -y --no-install-recommends g++" in dockerfile
    # the client, its own distribution that the package depends on, is installed from the same checkout
    assert "\nRUN pip install -c constraints.txt ./clients/python .\n" in dockerfile


def _volumes(service: dict[str, Any]) -> list[str]:
    out = []
    for volume in service.get("volumes", []):
        out.append(volume if isinstance(volume, str) else f"{volume['source']}:{volume['target']}")
    return out


OLDER_DATA_END = "2012-06-29"


def weak_champions(root: Path) -> dict[str, str]:
    """Tiny champions whose quantiles are far off, so that any trained challenger beats them.

    They claim prices only up to mid-2012, so a retrain on the bundled prices has newer ones to learn from.
    """
    registry = Registry(root)
    for mode in ("ar", "latent"):
        checkpoint = tiny_checkpoint(mode, seed=4, last=OLDER_DATA_END)
        checkpoint["state_dict"]["head.bias"] += 3.0
        registry.promote(registry.register(checkpoint).version)
    return {mode: str(registry.champion(mode)) for mode in ("ar", "latent")}


def local_command(command: list[str], port: int) -> list[str]:
    """A container's command run here: the same, listening on loopback and a free port."""
    swap = {"0.0.0.0": "127.0.0.1", "8000": str(port)}
    if command[:2] == ["sh", "-c"]:
        script = command[2]
        for old, new in swap.items():
            script = script.replace(old, new)
        return ["sh", "-c", script]
    return [swap.get(part, part) for part in command]


class Streamer(threading.Thread):
    """A client posting one observation at a time to an open session, counting failures."""

    def __init__(self, url: str, session: str, next_seq: int, closes: list[float]) -> None:
        super().__init__(daemon=True)
        self.url, self.session, self.seq, self.closes = url, session, next_seq, closes
        self.sent = 0
        self.failures: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.halt.is_set() and self.seq < len(self.closes):
                body = {"seq": self.seq, "observations": [self.closes[self.seq]]}
                try:
                    reply = client.post(f"/v1/sessions/{self.session}/observations", json=body)
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                if reply.status_code != 200:
                    self.failures.append(reply.text)
                self.seq, self.sent = self.seq + 1, self.sent + 1
                time.sleep(0.02)


@pytest.mark.slow
def test_api_and_scheduler_commands_retrain_and_serve_without_a_failed_request(compose, redis_server, tmp_path, closes):
    before = weak_champions(tmp_path)
    port = free_port()
    env = {
        **os.environ,
        **compose["services"]["api"]["environment"],
        "LATENTCAST_ARTIFACTS": str(tmp_path),
        "LATENTCAST_REDIS_URL": redis_server,
        "LATENTCAST_REDIS_PREFIX": "deployment-test",
        "LATENTCAST_REGISTRY_POLL_SECONDS": "1",
        "LATENTCAST_RETRAIN_CRON": "* * * * *",
        "LATENTCAST_RETRAIN_SOURCE": "bundled",  # offline here; yfinance's fallback is tested on its own
        "LATENTCAST_RETRAIN_TICKERS": "IBM",
        "LATENTCAST_RETRAIN_EPOCHS": "2",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
    }
    api = ServiceProcess(
        env, tmp_path / "api.log", port, command=lambda port: local_command(compose["services"]["api"]["command"], port)
    )
    with open(tmp_path / "scheduler.log", "wb") as log:
        scheduler = subprocess.Popen(
            local_command(compose["services"]["scheduler"]["command"], port),
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    streamers: list[Streamer] = []
    try:
        api.start()
        with httpx.Client(base_url=url, timeout=10) as client:
            for mode in ("latent", "ar"):
                opened = client.post("/v1/sessions", json={"mode": mode, "history": closes[:20]})
                assert opened.status_code == 201, opened.text
                assert opened.json()["model"]["version"] == before[mode]
                streamers.append(Streamer(url, opened.json()["session_id"], 20, closes))
            for streamer in streamers:
                streamer.start()
            deadline = time.monotonic() + PICKUP_SECONDS
            champions: dict[str, str] = dict(before)
            while time.monotonic() < deadline and any(champions[m] == before[m] for m in before):
                assert scheduler.poll() is None, (tmp_path / "scheduler.log").read_text()
                champions = client.get("/v1/models").json()["champions"]
                time.sleep(0.5)
            assert all(champions[m] != before[m] for m in before), (tmp_path / "scheduler.log").read_text()[-3000:]
            # new sessions get the new champions; the open ones keep their version
            for streamer, mode in zip(streamers, ("latent", "ar"), strict=True):
                fresh = client.post("/v1/sessions", json={"mode": mode, "history": closes[:20]})
                assert fresh.json()["model"]["version"] == champions[mode]
                pinned = client.get(f"/v1/sessions/{streamer.session}").json()
                assert pinned["model"]["version"] == before[mode]
            time.sleep(1.0)  # requests go on across the switch
        for streamer in streamers:
            streamer.halt.set()
            streamer.join(timeout=10)
        assert [s.failures for s in streamers] == [[], []]
        assert all(s.sent > 10 for s in streamers)
        [job] = JobStore(tmp_path / "jobs").latest()
        assert job.status == "succeeded" and all(m["promoted"] for m in job.modes)
        settings = Settings(artifacts=tmp_path)
        assert heartbeat_is_fresh(settings)[0]
        check = subprocess.run(
            local_command(compose["services"]["scheduler"]["healthcheck"]["test"][1:], port),
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        for streamer in streamers:
            streamer.halt.set()
        api.stop()
        scheduler.terminate()
        try:
            scheduler.wait(timeout=15)
        except subprocess.TimeoutExpired:
            scheduler.kill()
            scheduler.wait(timeout=15)  # reaped, or its Popen warns (an error here) that it still runs
