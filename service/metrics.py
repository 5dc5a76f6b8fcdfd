"""Prometheus metrics of one app, in a registry of its own (several apps can share a process).

latentcast_http_requests_total{method, route, status}
latentcast_http_request_duration_seconds{method, route}     histogram
latentcast_sessions_open                                    read from the store at each scrape
latentcast_sessions_evicted_total{reason}                   ttl or capacity
latentcast_observations_applied_total{mode, kind}           open, append or migrate
latentcast_model_reloads_total{result}                      failed (any mode), changed or unchanged
latentcast_model_loaded{mode, version, champion}            1 per loaded version
latentcast_champion_load_failures{mode, version}            loads failed in a row of a champion that does not load
latentcast_append_batch_size                                histogram: appends stepped together
latentcast_live_*                                           live scores of settled forecasts (service/live/metrics.py)
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.live.metrics import LiveCollector
from service.model_pool import ModelPool, RefreshResult

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# one request is a few milliseconds; the tail matters up to seconds
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# micro-batches hold one append up to LATENTCAST_BATCH_MAX (64 by default)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# a client may send any token as its method: others are counted as one, so that made-up methods
# cannot grow the number of series without bound
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class ServiceMetrics:
    """The metrics of one app; ``render`` gives the Prometheus text format."""

    def __init__(self, pool: ModelPool) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "latentcast_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "latentcast_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.sessions_open = Gauge("latentcast_sessions_open", "Sessions in the store", registry=self.registry)
        self.sessions_evicted = Counter(
            "latentcast_sessions_evicted", "Sessions dropped by the store", ["reason"], registry=self.registry
        )
        self.observations_applied = Counter(
            "latentcast_observations_applied",
            "Observations applied to session states",
            ["mode", "kind"],
            registry=self.registry,
        )
        self.reloads = Counter(
            "latentcast_model_reloads", "Looks for new champions, by outcome", ["result"], registry=self.registry
        )
        self.batch_sizes = Histogram(
            "latentcast_append_batch_size",
            "Appends stepped as one batch (micro-batching)",
            buckets=BATCH_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_ModelCollector(pool))
        self.live = LiveCollector()  # given the store's sums before each scrape
        self.registry.register(self.live)
        # the labelled series of each request kind, looked up once: ``labels`` takes a lock and
        # builds its key at every call, and requests are counted at every request
        self._request_series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._applied_series: dict[tuple[str, str], Counter] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "OTHER"
        series = self._request_series.get((method, route, status))
        if series is None:
            series = self.requests.labels(method, route, str(status)), self.latency.labels(method, route)
            self._request_series[(method, route, status)] = series
        series[0].inc()
        series[1].observe(seconds)

    def evicted(self, reason: str, count: int) -> None:
        self.sessions_evicted.labels(reason).inc(count)

    def applied(self, mode: str, kind: str, count: int) -> None:
        if count:
            series = self._applied_series.get((mode, kind))
            if series is None:
                series = self._applied_series[(mode, kind)] = self.observations_applied.labels(mode, kind)
            series.inc(count)

    def batched(self, size: int) -> None:
        self.batch_sizes.observe(size)

    def refreshed(self, result: RefreshResult) -> None:
        outcome = "failed" if result.failed else "changed" if result.changed else "unchanged"
        self.reloads.labels(outcome).inc()

    def render(self, sessions_open: int | None) -> bytes:
        """The text format; ``sessions_open`` None keeps the last value (the store did not answer)."""
        if sessions_open is not None:
            self.sessions_open.set(sessions_open)
        return generate_latest(self.registry)


class _ModelCollector(Collector):
    """Which versions are loaded and which champions fail to load, read from the pool at each scrape."""

    def __init__(self, pool: ModelPool) -> None:
        self.pool = pool

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "latentcast_model_loaded", "Model versions loaded (1), by mode", labels=["mode", "version", "champion"]
        )
        champions = set(self.pool.champions().values())
        for version, mode in self.pool.loaded().items():
            family.add_metric([mode, version, str(version in champions).lower()], 1.0)
        yield family
        failures = GaugeMetricFamily(
            "latentcast_champion_load_failures",
            "Loads failed in a row of a promoted champion that does not load, by mode",
            labels=["mode", "version"],
        )
        for mode, failing in sorted(self.pool.failing().items()):
            failures.add_metric([mode, failing.version or ""], float(failing.failures))
        yield failures
