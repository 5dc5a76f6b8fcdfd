"""The service's settings: one object, read from ``LATENTCAST_*`` environment variables.

Every default of the service lives here. ``get_settings()`` reads the
environment once per process; ``create_app`` takes a ``Settings`` so that tests
build apps with their own values instead of patching the environment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from latentcast.errors import ConfigError

ENV_PREFIX = "LATENTCAST_"
# a short key is guessable; 16 characters of token_urlsafe carry 96 bits
MIN_KEY_LENGTH = 16
# Read by the commands that talk to a running service (`latentcast replay`), never by the service: a client's one
# key, where the service reads its list in api_keys (LATENTCAST_API_KEYS). docs/settings.md lists it.
CLIENT_API_KEY = f"{ENV_PREFIX}API_KEY"
CLIENT_VARIABLES = {
    CLIENT_API_KEY: "the key `latentcast replay` sends as X-API-Key, one of the service's "
    f"`{ENV_PREFIX}API_KEYS`; `--api-key` overrides it",
}
# file descriptors a worker needs besides its client connections: the registry's files, the Redis
# pool, the retrain jobs' pipes and logs
RESERVED_FILES = 256


class Settings(BaseSettings):
    """What the service reads from the environment (``LATENTCAST_<NAME>``)."""

    # a refused value is never repeated in the error: it may be a key
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore", hide_input_in_errors=True)

    # where models come from
    artifacts: Path = Field(default=Path("artifacts"), description="registry folder holding the model versions")
    registry_poll_seconds: float = Field(
        default=30.0, ge=0, description="seconds between two looks for new champions; 0 disables"
    )
    champion_retry_seconds: float = Field(
        default=30.0, ge=0, description="first wait before loading again a champion that failed to load"
    )
    champion_retry_max_seconds: float = Field(
        default=3600.0, ge=0, description="longest wait between two loads of a champion that keeps failing"
    )
    registry_lease_seconds: float = Field(
        default=300.0,
        gt=0,
        description="how long a serving process's list of the versions it holds protects them from a prune",
    )
    # retention: what `latentcast registry prune` and every retrain job keep
    retain_previous_champions: int = Field(
        default=5, ge=0, description="champions kept per mode besides the current one, the latest promoted"
    )
    retain_challenger_days: float = Field(
        default=14.0, ge=0, description="days a version never promoted (a challenger) is kept"
    )
    retain_job_days: float = Field(default=90.0, ge=0, description="days a finished retrain job's report is kept")
    retain_cache_days: float = Field(
        default=30.0, ge=0, description="days a ticker's cached prices are kept once no retrain refreshes them"
    )
    torch_threads: int = Field(
        default=1, ge=1, description="torch intra-op threads per process, and numpy's BLAS threads"
    )
    # the objects loaded at startup (torch, pandas, the app) are never garbage, yet every full collection
    # walks them all (docs/performance.md)
    gc_freeze: bool = Field(
        default=True, description="once started, exempt the objects loaded so far from garbage collection"
    )
    gc_threshold: int = Field(
        default=10_000,
        ge=0,
        description="allocations between two young-generation collections (Python's default is 700; 0 keeps it)",
    )

    # where sessions live
    store: Literal["memory", "redis"] = Field(default="memory", description="session store")
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", description="Redis server of the redis store")
    redis_cluster: bool = Field(
        default=False,
        description="LATENTCAST_REDIS_URL names one node of a Redis Cluster (the others are found from it)",
    )
    redis_prefix: str = Field(default="latentcast", min_length=1, description="prefix of every Redis key")
    redis_timeout_seconds: float = Field(default=2.0, gt=0, description="Redis connect and command timeout")
    session_ttl_seconds: float = Field(default=86400.0, gt=0, description="a session unused this long is dropped")
    max_sessions: int = Field(
        default=10_000,
        ge=1,
        description="open sessions; at this many, a new one takes the place of its key's least recently used "
        "session, and a key holding none is refused (503): no key's session is dropped for another's",
    )
    retained_observations: int = Field(
        default=1000, ge=0, description="raw observations kept per session, for overlapping batches and migration"
    )
    retained_replies: int = Field(default=8, ge=1, description="recent replies kept per session to answer retries")
    live_scores: bool = Field(
        default=True,
        description="score every answered forecast as its outcomes arrive, summed per model version and horizon "
        "in the session store (GET /v1/models/live, docs/live.md)",
    )
    shadow: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="fraction of new sessions (sampled from their id) also run, unanswered, by the other mode's "
        "champion and scored live beside it (GET /v1/compare/live, docs/live.md); needs live_scores",
    )
    shadow_challengers: bool = Field(
        default=True,
        description="a shadowed session is also run by the newest registered challenger of each mode (at most 3 "
        "shadows a session, docs/live.md)",
    )
    shadow_pairs: int = Field(
        default=2000,
        ge=10,
        description="paired loss differences kept per model pair and horizon for GET /v1/compare/live",
    )
    max_sessions_per_key: int = Field(
        default=1000,
        ge=1,
        description="open sessions one API key may hold (429 beyond); so that one key cannot push out "
        "everyone else's sessions through max_sessions. Only with keys: without, max_sessions bounds all",
    )

    inline_observations: int = Field(
        default=64,
        ge=0,
        description="model work on at most this many new observations runs on the event loop, more in a thread",
    )

    # micro-batching: appends to different sessions on one model version stepped as one batch
    batch_enabled: bool = Field(default=True, description="step concurrent appends on one model as one batch")
    batch_wait_ms: float = Field(
        default=2.0, ge=0, le=1000, description="longest an append waits for others while a batch is running"
    )
    batch_max: int = Field(default=64, ge=1, description="most appends stepped in one batch")

    # request bounds
    max_batch: int = Field(default=1000, ge=1, description="observations in one POST to a session (413 beyond)")
    max_history: int = Field(
        default=10_000, ge=1, description="observations in a warm-up history or a stateless forecast"
    )
    max_bulk_items: int = Field(
        default=1000, ge=1, description="items (sessions' batches, or histories) in one bulk request or stream message"
    )
    max_body_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        description="largest request body, and largest WebSocket message, in bytes (413 beyond; a message "
        "beyond closes its WebSocket with 1009)",
    )
    inline_body_bytes: int = Field(
        default=65_536,
        ge=0,
        description="a body or WebSocket message up to this size is parsed and validated on the event loop, "
        "a larger one in a worker thread",
    )
    stream_queue: int = Field(
        default=64,
        ge=1,
        description="replies a WebSocket may have waiting to be sent (a client reading slower is disconnected), "
        "and messages waiting to be applied (a client sending faster waits)",
    )
    max_streams_per_key: int = Field(
        default=8,
        ge=1,
        description="WebSocket connections one API key may hold open in one worker (429 at the handshake beyond); "
        "a feed needs one. Only with keys",
    )
    # a reply holds horizon x quantiles numbers twice (log returns and prices), and every session
    # keeps its last retained_replies replies
    max_horizon: int = Field(
        default=60, ge=1, description="longest forecast horizon of a model served (about three months of days)"
    )
    max_quantiles: int = Field(
        default=19, ge=1, description="most quantile levels of a model served (every 5%: 0.05 to 0.95)"
    )

    # access
    api_keys: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="comma-separated client keys, each at least 16 characters; with these or an admin key set, "
        "every /v1 route needs X-API-Key (`latentcast replay` sends LATENTCAST_API_KEY, one key)",
    )
    admin_key: str | None = Field(
        default=None, description="key of the admin routes (also a client key), at least 16 characters"
    )

    # retraining (the scheduler and POST /v1/retrain run `latentcast retrain` with these)
    retrain_cron: str = Field(
        default="30 22 * * 1-5", description="when the scheduler retrains: a 5-field cron (after the US close, UTC)"
    )
    retrain_timezone: str = Field(default="UTC", description="time zone of the cron expression")
    retrain_source: Literal["yfinance", "bundled", "csv", "parquet"] = Field(
        default="yfinance", description="yfinance falls back to its disk cache, then to the bundled prices"
    )
    retrain_path: str | None = Field(
        default=None, description="file or folder of prices when the source is csv or parquet"
    )
    retrain_tickers: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("AAPL", "GOOG", "IBM", "MSFT"), description="comma-separated tickers to retrain on"
    )
    retrain_level: float = Field(
        default=0.10,
        gt=0,
        lt=1,
        description="a challenger is promoted when a one-sided paired Diebold-Mariano test on the holdout's daily "
        "losses says it is better at this level (docs/retraining.md)",
    )
    retrain_stale_days: int = Field(
        default=126,
        ge=0,
        description="or when it is not significantly worse and has read at least this many trading days of prices "
        "that the champion never read",
    )
    drift_check_seconds: float = Field(
        default=0.0,
        ge=0,
        description="how often the scheduler checks the champions' live coverage on the Redis store (0: never); "
        "out of the band, it starts a retrain (docs/live.md)",
    )
    drift_low: float = Field(default=0.70, gt=0, lt=1, description="live coverage below this starts a retrain")
    drift_high: float = Field(default=0.90, gt=0, lt=1, description="live coverage above this starts a retrain")
    drift_window: int = Field(default=500, ge=10, description="settled 1-step forecasts the live coverage is over")
    drift_cooldown_seconds: float = Field(default=86_400.0, ge=0, description="least time between drift retrains")
    retrain_epochs: int = Field(default=40, ge=1, description="most epochs of a retrain (early stopping may end it)")
    retrain_holdout_days: int = Field(
        default=126,
        ge=1,
        description="the newest trading days a retrain scores challenger and champion on (about six months); "
        "as many days before them validate, and training ends before those",
    )
    retrain_history_years: int = Field(
        default=10, ge=1, description="years of prices a retrain learns from (yfinance is asked from then on)"
    )
    retrain_refit: bool = Field(
        default=False, description="refit a promoted challenger through the newest price and serve the refit"
    )
    retrain_timeout_seconds: float = Field(
        default=3600.0, gt=0, description="a retrain running longer is killed and reported failed"
    )

    # the front door: what one connection may take before a request reaches the app (docs/limits.md)
    max_header_bytes: int = Field(
        default=32_768,
        ge=1024,
        le=1_048_576,
        description="request line and headers of one request (431 beyond); nginx's default also accepts 32 KiB",
    )
    header_timeout_seconds: float = Field(
        default=10.0, gt=0, description="time to send a request line and headers, from the first byte (408 past it)"
    )
    body_timeout_seconds: float = Field(
        default=30.0, gt=0, description="time to send a request body once its headers are in (408 past it)"
    )
    keep_alive_seconds: int = Field(
        default=5, ge=1, description="an idle connection between two requests is closed after this long"
    )
    max_connections: int = Field(
        default=2048,
        ge=1,
        description="open connections per worker; one more is answered 503 and closed (the proxy queues instead)",
    )

    # where to listen
    host: str = Field(default="127.0.0.1", description="interface uvicorn binds (0.0.0.0 in a container)")
    port: int = Field(default=8000, ge=1, le=65535, description="port uvicorn listens on")
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info", description="log level")
    # uvicorn kills a worker that misses its health check; a starting one answers only once torch and
    # the app are imported, which takes longer than uvicorn's 5 s on a busy machine
    worker_healthcheck_seconds: int = Field(
        default=60, ge=1, description="with --workers: how long a worker may take to answer its supervisor"
    )

    @field_validator("api_keys", "retrain_tickers", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(key.strip() for key in value.split(",") if key.strip())
        return value

    @field_validator("retrain_tickers", mode="after")
    @classmethod
    def _upper_tickers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("retrain_tickers needs at least one ticker")
        return tuple(t.upper() for t in value)

    @field_validator("retrain_cron", mode="after")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        from apscheduler.triggers.cron import CronTrigger  # only settings that schedule need it

        try:
            CronTrigger.from_crontab(value)
        except ValueError as exc:
            raise ValueError(f"retrain_cron {value!r} is not a 5-field cron expression: {exc}") from exc
        return value

    @field_validator("admin_key", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("api_keys", "admin_key", mode="after")
    @classmethod
    def _keys_are_long_enough(cls, value: tuple[str, ...] | str | None) -> tuple[str, ...] | str | None:
        keys = (value,) if isinstance(value, str) else value or ()
        if any(len(key) < MIN_KEY_LENGTH for key in keys):
            raise ValueError(f"API keys must be at least {MIN_KEY_LENGTH} characters long")
        return value

    @property
    def auth_enabled(self) -> bool:
        """Keys are required as soon as any key is configured."""
        return bool(self.api_keys) or self.admin_key is not None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read from the environment once.

    ``ConfigError`` names each refused variable and why, in one line, never its
    value (a key's value would end up in the log of whatever runs the service).
    """
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(settings_problems(exc)) from None


def settings_problems(error: ValidationError) -> str:
    """``LATENTCAST_MAX_BATCH: Input should be ...; ...`` from a ``Settings`` validation error."""
    problems = []
    for item in error.errors(include_input=False, include_url=False):
        message = str(item["msg"]).removeprefix("Value error, ")
        problems.append(f"{ENV_PREFIX}{str(item['loc'][0]).upper()}: {message}" if item["loc"] else message)
    return "; ".join(problems)
