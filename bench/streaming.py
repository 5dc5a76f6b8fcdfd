"""Cost of the next forecast after one new observation, in process, side by side.

For history lengths 100, 1,000 and 10,000 (real daily returns of IBM,
repeated past the end of the data), times in one run: the latent step, the
latent step with its state read from and written to bytes (as a session
does), the ar model's window re-read, and a full re-run of the history.
The latent step is the serving path: one new row goes through the numpy
step kernel (``models/kernel.py``); the ar window and the re-run through torch.
Prints the medians and the ratios that matter:

- latent at 10,000 / latent at 100 (goal: within 1.2x: constant cost);
- ar window / latent step at the default window (goal: at least 5x);
- the latent step's median (goal: well under a millisecond);
- a volatility-scaled latent step / the globally scaled one, measured in the
  same run at the shortest history (the EWMA costs a few numpy calls).

    python -m bench.streaming [--lengths 100 1000 10000] [--budget 1.0] [--threads 1]
"""

from __future__ import annotations

import argparse
import os

import torch

from data import sources
from data.features import DEFAULT_FEATURES, build_series, fit_scaler, split_dates
from models.config import ModelConfig
from models.forecaster import Forecaster
from models.predictor import Predictor
from training.costs import DEFAULT_LENGTHS, forecast_costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=list(DEFAULT_LENGTHS))
    parser.add_argument("--budget", type=float, default=1.0, help="seconds of timing per method and length")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the service's default is 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    prices = sources.bundled()
    series = build_series(prices, DEFAULT_FEATURES, ModelConfig().horizon)
    scaler = fit_scaler(series, split_dates(series), DEFAULT_FEATURES)
    torch.manual_seed(0)
    latent = Predictor(Forecaster(ModelConfig(mode="latent", scaling="global")), scaler)
    scaled = Predictor(Forecaster(ModelConfig(mode="latent", scaling="volatility")), scaler)
    ar = Predictor(Forecaster(ModelConfig(mode="ar", scaling="global")), scaler)
    costs = forecast_costs(latent, ar, prices[prices["ticker"] == "IBM"], args.lengths, args.budget)
    by = {(c.method, c.history): c.median_us for c in costs}
    ibm = prices[prices["ticker"] == "IBM"]
    vol = {c.method: c.median_us for c in forecast_costs(scaled, ar, ibm, args.lengths[:1], args.budget)}
    methods = ["latent_step", "latent_torch", "ar_window", "full_rerun"]
    print(
        f"cores {os.cpu_count()}, torch threads {torch.get_num_threads()}, default ModelConfig "
        f"({ModelConfig().cell}, hidden {ModelConfig().hidden_size}, window {ModelConfig().window}); "
        f"median microseconds per forecast"
    )
    print(f"{'history':>8}" + "".join(f"{m:>16}" for m in methods))
    for n in args.lengths:
        print(f"{n:>8}" + "".join(f"{by[(m, n)]:>16.1f}" for m in methods))
    first, last = args.lengths[0], args.lengths[-1]
    print(
        f"latent step at {last} / at {first}: {by[('latent_step', last)] / by[('latent_step', first)]:.2f}x "
        "(goal <= 1.2x)"
    )
    for n in args.lengths:
        print(
            f"history {n}: ar window / latent step {by[('ar_window', n)] / by[('latent_step', n)]:.1f}x "
            f"(goal >= 5x), "
            f"full re-run / latent step {by[('full_rerun', n)] / by[('latent_step', n)]:.0f}x"
        )
    print(
        f"latent step median, as served (state bytes, numpy kernel) {by[('latent_step', last)]:.0f} us, "
        f"through torch in memory {by[('latent_torch', last)]:.0f} us (goal: well under 1000 us)"
    )
    for method in ("latent_step", "latent_torch"):
        print(
            f"history {first}: volatility-scaled / globally scaled {method}: {vol[method]:.1f} / "
            f"{by[(method, first)]:.1f} us = {vol[method] / by[(method, first)]:.2f}x"
        )


if __name__ == "__main__":
    main()
