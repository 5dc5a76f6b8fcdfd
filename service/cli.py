"""The ``latentcast`` command: data, train, evaluate, compare, serve, retrain, schedule."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from data import sources
from data.errors import ConfigError, ForecastError
from service.config import get_settings


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        code: int = args.handler(args)
    except ForecastError as exc:
        print(f"latentcast {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="latentcast", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = commands.add_parser("data", help="list the tickers, rows and date spans of a price source")
    add_source_arguments(data)
    data.set_defaults(handler=run_data)

    serve = commands.add_parser("serve", help="run the HTTP service with uvicorn")
    serve.add_argument("--host", help="interface to bind (default: LATENTCAST_HOST, else 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: LATENTCAST_PORT, else 8000)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (more than 1 needs the redis store)")
    serve.set_defaults(handler=run_serve)
    return parser


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", choices=sources.SOURCES, default="bundled", help="where prices come from")
    parser.add_argument("--path", help="CSV file or folder (source csv)")
    parser.add_argument("--tickers", nargs="+", help="only these tickers")
    parser.add_argument("--start", help="first date, YYYY-MM-DD")
    parser.add_argument("--end", help="end date (exclusive), YYYY-MM-DD")


def run_data(args: argparse.Namespace) -> int:
    frame = sources.load(args.source, tickers=args.tickers, path=args.path, start=args.start, end=args.end)
    print(sources.summary(frame).to_string())
    return 0


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn  # only this command needs it

    settings = get_settings()
    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    if args.workers > 1 and settings.store == "memory":
        raise ConfigError(
            "several workers need LATENTCAST_STORE=redis: with the memory store each would hold its own sessions"
        )
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=args.host or settings.host,
        port=args.port or settings.port,
        workers=args.workers,
        log_level=settings.log_level,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
