"""Training's fused GRU (``models/fused_gru.py``) against ``nn.GRU``, side by side in one run.

One layer's forward and backward at the shapes training runs, 1 torch thread:
ar (64 windows of 32 steps, scored at the last step) and latent (16 and 500
streams of 50 steps, scored at every step), the conv's 32 channels in and 64
hidden units, as the default model; then its forward without gradients at the
shape of a latent validation pass (4 and 64 tickers read from their first row,
2,500 steps), inside ``fused_gru.evaluation()`` for the fused one. Each
repetition times ``--passes`` passes of each, interleaved so that both see the
same machine; printed are the median milliseconds per pass and the ratio of
the medians.

    python -m bench.fused_gru [--repeats 5] [--passes 30]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from models import fused_gru
from models.config import ModelConfig

MS = 1000.0
# what, B, T, how many passes of --passes (the validation passes read 50 times as many steps as a training one)
SHAPES = (
    ("ar", 64, 32, 1.0),
    ("latent", 16, 50, 1.0),
    ("latent", 500, 50, 1.0),
    ("validation", 4, 2500, 0.2),
    ("validation", 64, 2500, 0.1),
)


def one_pass(rnn: nn.GRU, x: torch.Tensor, fused: bool, what: str) -> Callable[[], None]:
    h0 = torch.zeros(1, x.shape[0], rnn.hidden_size)

    def train() -> None:
        y, _ = fused_gru.gru(rnn, x, h0) if fused else rnn(x, h0)
        (y[:, -1] if what == "ar" else y).sum().backward()

    def validate() -> None:
        with torch.no_grad(), fused_gru.evaluation() if fused else contextlib.nullcontext():
            fused_gru.gru(rnn, x, h0) if fused else rnn(x, h0)

    return validate if what == "validation" else train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--passes", type=int, default=30, help="forward and backward passes per timing")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not fused_gru.available():
        raise SystemExit("the fused GRU is not available here: see the warning above")
    config = ModelConfig()
    print(f"cores {os.cpu_count()}, 1 torch thread, GRU {config.conv_channels} in, {config.hidden_size} hidden;")
    print(f"median of {args.repeats} interleaved timings of up to {args.passes} passes,")
    print("ms per forward and backward pass (validation: per forward pass without gradients)")
    print(f"{'shape':>26}{'nn.GRU ms':>11}{'fused ms':>10}{'nn.GRU / fused':>16}")
    for what, batch, steps, share in SHAPES:
        rnn = nn.GRU(config.conv_channels, config.hidden_size, batch_first=True)
        x = torch.randn(batch, steps, config.conv_channels, requires_grad=what != "validation")
        runs = {fused: one_pass(rnn, x, fused, what) for fused in (False, True)}
        passes = max(1, round(args.passes * share))
        for run in runs.values():  # untimed: the first pass allocates, and the fused one keeps its buffers
            run()
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.repeats):
            for fused, run in runs.items():
                started = time.perf_counter()
                for _ in range(passes):
                    run()
                times[fused].append((time.perf_counter() - started) / passes * MS)
        plain, fused_ms = statistics.median(times[False]), statistics.median(times[True])
        shape = f"{what} {batch} x {steps} steps"
        print(f"{shape:>26}{plain:>11.2f}{fused_ms:>10.2f}{plain / fused_ms:>15.2f}x")


if __name__ == "__main__":
    main()
