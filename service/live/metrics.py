"""Live scores as Prometheus metrics, read from the session store's sums at each scrape.

latentcast_live_settled_total{mode, version, horizon}          settled forecasts scored
latentcast_live_pinball_sum{mode, version, horizon, level}     their pinball losses, summed
latentcast_live_inside_total{mode, version, horizon}           outcomes inside the outer quantile band
latentcast_live_abs_error_sum{mode, version, horizon}          |outcome - median|, summed
latentcast_live_walk_abs_error_sum{mode, version, horizon}     |outcome| (the random walk's error), summed
latentcast_live_pinball{mode, version, horizon}                running mean pinball loss (over the levels)
latentcast_live_coverage{mode, version, horizon}               running share inside the band
latentcast_live_mae_ratio{mode, version, horizon}              median's MAE over the random walk's

The sums are every process's (the store keeps them), so a rate over any
scraped replica is the service's; the running means are since the first score.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.live.sums import LiveSums, horizon_report

LABELS = ["mode", "version", "horizon"]


class LiveCollector(Collector):
    """Yields the metrics of the last sums it was given (``update``, before each scrape)."""

    def __init__(self) -> None:
        self.live = LiveSums()

    def update(self, live: LiveSums) -> None:
        self.live = live

    def collect(self) -> Iterable[Metric]:
        settled = CounterMetricFamily("latentcast_live_settled", "Settled forecasts scored live", labels=LABELS)
        pinball_sum = GaugeMetricFamily(
            "latentcast_live_pinball_sum", "Pinball losses of settled forecasts, summed", labels=[*LABELS, "level"]
        )
        inside = CounterMetricFamily(
            "latentcast_live_inside", "Settled outcomes inside the outer quantile band", labels=LABELS
        )
        abs_error = GaugeMetricFamily(
            "latentcast_live_abs_error_sum", "Absolute errors of the median forecast, summed", labels=LABELS
        )
        walk = GaugeMetricFamily(
            "latentcast_live_walk_abs_error_sum", "Absolute errors of the random walk, summed", labels=LABELS
        )
        pinball = GaugeMetricFamily("latentcast_live_pinball", "Running mean pinball loss", labels=LABELS)
        coverage = GaugeMetricFamily("latentcast_live_coverage", "Running share inside the band", labels=LABELS)
        ratio = GaugeMetricFamily("latentcast_live_mae_ratio", "Median's MAE over the random walk's", labels=LABELS)
        for (version, mode, horizon), sums in sorted(self.live.sums.items()):
            labels = [mode, version, str(horizon)]
            settled.add_metric(labels, sums.count)
            for level, total in sorted(sums.pinball.items()):
                pinball_sum.add_metric([*labels, repr(level)], total)
            inside.add_metric(labels, sums.inside)
            abs_error.add_metric(labels, sums.abs_error)
            walk.add_metric(labels, sums.walk_abs_error)
            shown = horizon_report(horizon, sums)
            for family, name in ((pinball, "pinball"), (coverage, "coverage"), (ratio, "mae_ratio")):
                if shown[name] is not None:
                    family.add_metric(labels, shown[name])
        yield from (settled, pinball_sum, inside, abs_error, walk, pinball, coverage, ratio)
