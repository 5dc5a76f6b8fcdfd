"""The latentcast command (``latentcast = "service.cli:main"``): ``parser`` builds the arguments, and
the runners live by area: ``training`` (train, evaluate, compare, calibration, backtest), ``retraining``
(retrain, registry prune, schedule) and ``serving`` (serve, replay, data)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from latentcast.errors import ForecastError
from service.cli.parser import build_parser
from service.config import get_settings


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if "artifacts" in args and args.artifacts is None:
            args.artifacts = get_settings().artifacts
        code: int = args.handler(args)
    except ForecastError as exc:
        print(f"latentcast {args.command}: error: {exc}", file=sys.stderr)
        return 2
    if args.command in ("train", "retrain") and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from training import distributed  # torch: only for a process a launcher (torchrun) started

        distributed.exit_now(code)  # as a spawned training process ends, for the same reason
    return code
