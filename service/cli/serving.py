"""The commands around a running service: serve it, replay prices into it, and list or fetch its prices."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from typing import Any

import httpx
import pandas as pd
from latentcast_client import ApiError, Client, ClientSettings
from latentcast_client.replay import ReplayPlan, replay, write_rows

from data import fetch, sources
from latentcast.errors import ConfigError
from service.cli.arguments import load_prices
from service.config import CLIENT_API_KEY, Settings, get_settings
from training.retrain import RetrainConfig

APP = "service.http.app:create_app"  # a factory: each worker builds its own app
BAR_FIELDS = ("close", "open", "high", "low", "volume")


def run_data(args: argparse.Namespace) -> int:
    if args.action == "list":
        print(sources.summary(load_prices(args)).to_string())
        return 0
    tickers = [t.upper() for t in args.tickers or []]
    if args.tickers_file is not None:
        tickers += [t for t in fetch.read_tickers(args.tickers_file) if t not in tickers]
    if not tickers:
        raise ConfigError("data fetch needs --tickers-file or --tickers")
    cache = sources.PriceCache(RetrainConfig(artifacts=args.artifacts).cache_dir)
    report = fetch.fill_cache(tickers, cache, chunk=args.chunk, start=args.start, progress=not args.no_progress)
    print(f"{len(report.fetched)} fetched, {len(report.cached)} already cached in {cache.directory}")
    for ticker, reason in report.failed.items():
        print(f"{ticker}: not fetched: {reason}", file=sys.stderr)
    return 1 if report.failed else 0


def run_replay(args: argparse.Namespace) -> int:
    if args.warm < 1:
        raise ConfigError(f"--warm must be at least 1, got {args.warm}")
    prices = sources.load("csv", tickers=args.tickers, path=args.path)
    plan = ReplayPlan(warm=args.warm, mode=args.mode, version=args.version, via=args.via)
    # from the environment, so that the key stays out of shell histories
    key = args.api_key or os.environ.get(CLIENT_API_KEY)
    url = args.url or local_url(get_settings())
    try:
        with Client(ClientSettings(url, api_key=key)) as client, contextlib.ExitStack() as files:
            out = files.enter_context(args.out.open("w", newline="")) if args.out else sys.stdout
            count = write_rows(replay(client, wire_bars(prices), plan), out)
    except ApiError as exc:
        print(f"latentcast replay: error: the service answered {exc}", file=sys.stderr)
        return 1
    except (httpx.TransportError, OSError) as exc:  # OSError: the WebSocket's refused connection
        reason = str(exc) or type(exc).__name__
        print(
            f"latentcast replay: error: no service answers at {url} ({reason}); start one with `latentcast serve`"
            " or pass --url",
            file=sys.stderr,
        )
        return 1
    if args.out:
        print(f"{count} forecast rows in {args.out}")
    return 0


def wire_bars(frame: pd.DataFrame) -> dict[str, list[dict[str, Any]]]:
    """Each ticker's bars as the API takes them, oldest first (adjusted, as the models are trained)."""
    bars: dict[str, list[dict[str, Any]]] = {}
    for ticker, rows in frame.sort_values(["ticker", "date"]).groupby("ticker", sort=True):
        factor = rows["adj_close"] / rows["close"]
        adjusted = {
            "close": rows["adj_close"],
            "open": rows["open"] * factor,
            "high": rows["high"] * factor,
            "low": rows["low"] * factor,
            "volume": rows["volume"],
        }
        bars[str(ticker)] = [
            {name: float(adjusted[name].iloc[i]) for name in BAR_FIELDS if not math.isnan(adjusted[name].iloc[i])}
            | {"time": str(rows["date"].iloc[i])[:10]}
            for i in range(len(rows))
        ]
    return bars


def local_url(settings: Settings) -> str:
    """The URL of ``latentcast serve`` started here with these settings: its port, and its host unless it binds every
    interface."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "", "::") else settings.host
    return f"http://{host}:{settings.port}"


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn  # only this command needs it

    settings = get_settings()
    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    if args.workers > 1 and settings.store == "memory":
        raise ConfigError(
            "several workers need LATENTCAST_STORE=redis: with the memory store each would hold its own sessions"
        )
    from service.http.connections import LimitedHttpProtocol, LimitedWebSocketProtocol, allow_open_files
    from service.http.listeners import reuse_port_balances, serve_workers

    allow_open_files(settings.max_connections)
    options: dict[str, Any] = {
        "factory": True,
        "host": args.host or settings.host,
        "port": args.port or settings.port,
        "workers": args.workers,
        "log_level": settings.log_level,
        "http": LimitedHttpProtocol,
        "timeout_keep_alive": settings.keep_alive_seconds,
        # a WebSocket message is bounded as a request body is, and refused before it is read (close 1009)
        "ws": LimitedWebSocketProtocol,
        "ws_max_size": settings.max_body_bytes,
        "timeout_worker_healthcheck": settings.worker_healthcheck_seconds,
    }
    if args.workers > 1 and reuse_port_balances():
        serve_workers(uvicorn.Config(APP, **options))  # each worker on a socket of its own
    else:
        uvicorn.run(APP, **options)
    return 0
