"""``ModelPool``: the predictors this process serves, by version, and each mode's champion.

Champions are read from the registry at start and on every ``refresh`` (a
reload request or the background poll). A session stays on the version it was
opened with: the pool loads any version on first use (after a restart, say)
and keeps a non-champion version loaded while sessions use it, unloading it
only once it has been idle for a session lifetime. A new champion that fails to
load (corrupt, tampered, or a forecast larger than the configured bounds) is
skipped and the previous one keeps serving; it is tried again after a wait that
doubles at each failure (``Backoff``), so that a broken pointer costs neither a
load nor a log line at every poll. One line is logged when a mode starts
failing, when its reason changes and when it recovers; ``failing`` tells
readiness and the metrics which champions do not load.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from latentcast.errors import CheckpointError, ConfigError, NotFoundError, UnavailableError
from models.config import MODES, ModelConfig
from models.predictor import Predictor
from training.registry import Registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefreshResult:
    """What a refresh did: champions now served, those that changed, those that failed to load."""

    champions: dict[str, str]
    changed: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # mode -> reason


@dataclass(frozen=True)
class Failing:
    """A champion that does not load: which version, why, how many loads failed in a row, when to try again."""

    version: str | None  # None when the pointer itself is refused
    reason: str
    failures: int
    retry_at: float  # on the pool's clock


@dataclass(frozen=True)
class ModelBounds:
    """How large a served model's forecast may be: its horizon and its number of quantile levels."""

    max_horizon: int
    max_quantiles: int

    def problem(self, horizon: int, quantiles: int) -> str | None:
        """What is over the bounds in a model of ``horizon`` steps and ``quantiles`` levels, or None."""
        if horizon > self.max_horizon:
            return f"horizon {horizon} is over the limit of {self.max_horizon} (LATENTCAST_MAX_HORIZON)"
        if quantiles > self.max_quantiles:
            return f"{quantiles} quantile levels are over the limit of {self.max_quantiles} (LATENTCAST_MAX_QUANTILES)"
        return None


@dataclass(frozen=True)
class Backoff:
    """Waits between retries of a failing action: ``first_seconds``, doubled at each failure, up to ``max_seconds``."""

    first_seconds: float
    max_seconds: float

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure in a row (from 1)."""
        # the exponent is capped so that a long outage cannot overflow the float
        return min(self.first_seconds * 2.0 ** min(failures - 1, 64), self.max_seconds)


# a pool built without settings (a test's, a command's) retries a failing champion at every refresh
NO_BACKOFF = Backoff(first_seconds=0.0, max_seconds=0.0)


class ModelPool:
    """Loaded predictors by version; thread-safe (loading runs in worker threads)."""

    def __init__(
        self,
        registry: Registry,
        idle_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        bounds: ModelBounds | None = None,
        backoff: Backoff = NO_BACKOFF,
    ) -> None:
        self.registry = registry
        self.idle_seconds = idle_seconds
        self.bounds = bounds
        self.backoff = backoff
        self._clock = clock
        self._lock = threading.Lock()
        self._loaded: dict[str, Predictor] = {}
        self._last_used: dict[str, float] = {}
        self._champions: dict[str, str] = {}
        # modes whose champion pointer names a version that does not load, with none served instead
        self._unserved: dict[str, str] = {}
        # modes whose champion pointer names a version that failed to load, served or not
        self._failing: dict[str, Failing] = {}

    # which predictor ---------------------------------------------------------

    def resolve(self, mode: str | None = None, version: str | None = None) -> Predictor:
        """The predictor of ``version`` if given, else the champion of ``mode``."""
        if version is not None:
            return self.get(version)
        mode = mode or "latent"
        if mode not in MODES:
            raise NotFoundError(f"unknown mode {mode!r}; valid modes: {', '.join(MODES)}")
        champion = self.champions().get(mode)
        if champion is None and mode in self._unserved:
            raise UnavailableError(f"no {mode} model is served: {self._unserved[mode]}")
        if champion is None:
            raise NotFoundError(f"no champion for mode {mode!r}: no {mode} model has been promoted yet")
        return self.get(champion)

    def get_loaded(self, version: str) -> Predictor | None:
        """The predictor of ``version`` if it is loaded already (never reads the registry)."""
        with self._lock:
            predictor = self._loaded.get(version)
            if predictor is not None:
                self._last_used[version] = self._clock()
            return predictor

    def get(self, version: str) -> Predictor:
        """The predictor of ``version``, loaded from the registry on first use.

        ``NotFoundError`` for an unknown version; ``CheckpointError`` if it does not load.
        """
        predictor = self.get_loaded(version)
        if predictor is not None:
            return predictor
        self._check_bounds(version)
        # loaded outside the lock, so that the versions already loaded keep serving meanwhile
        predictor = self.registry.predictor(version)
        with self._lock:
            predictor = self._loaded.setdefault(version, predictor)
            self._last_used[version] = self._clock()
        log.info("loaded model %s", version)
        return predictor

    def _check_bounds(self, version: str) -> None:
        """``CheckpointError`` if the version's forecast is larger than the bounds, read before its weights."""
        if self.bounds is None:
            return
        try:
            config = ModelConfig.from_dict(self.registry.get(version).config)
        except (ConfigError, TypeError):
            return  # a config that does not read: the registry's load says why, its manifest checked first
        problem = self.bounds.problem(config.horizon, len(config.quantiles))
        if problem is not None:
            raise CheckpointError(f"version {version}: {problem}; it is not served")

    def champions(self) -> dict[str, str]:
        with self._lock:
            return dict(self._champions)

    def now(self) -> float:
        """The pool's clock, on which ``Failing.retry_at`` is read."""
        return self._clock()

    def failing(self) -> dict[str, Failing]:
        """The champions that do not load, by mode."""
        with self._lock:
            return dict(self._failing)

    def loaded(self) -> dict[str, str]:
        """Mode of each loaded version, by version."""
        with self._lock:
            return {version: p.config.mode for version, p in sorted(self._loaded.items())}

    def require_champion(self) -> None:
        """``UnavailableError`` unless a champion is loaded and every mode promoted has one.

        A mode whose champion pointer names a version that does not load (and none
        loaded before it) is not served: a process serving the other mode alone is
        not what its registry promises, so it is not ready.
        """
        with self._lock:
            unserved = dict(self._unserved)
            champions = bool(self._champions)
        if unserved:
            reasons = "; ".join(f"{mode}: {reason}" for mode, reason in sorted(unserved.items()))
            raise UnavailableError(f"not every mode is served ({reasons})", unserved=sorted(unserved))
        if not champions:
            raise UnavailableError("no model loaded: the registry has no champion yet")

    # changes -----------------------------------------------------------------

    def refresh(self, retry_now: bool = False) -> RefreshResult:
        """Read the registry's champions and load the new ones; never raises for a bad one.

        A champion that failed to load is tried again only once its back-off has
        passed, or at once with ``retry_now`` (an operator's reload); until then it
        is reported under ``failed`` with its last reason.
        """
        changed: dict[str, str] = {}
        failed: dict[str, str] = {}
        for mode in MODES:
            version: str | None = None
            try:
                version = self.registry.champion(mode)
                if version is None or version == self._champions.get(mode):
                    if self._recovered(mode):
                        log.info("the %s champion pointer no longer fails: it names %s", mode, version or "none")
                    continue
                waiting = self._failing.get(mode)
                backing_off = waiting is not None and waiting.version == version and not retry_now
                if waiting is not None and backing_off and self._clock() < waiting.retry_at:
                    failed[mode] = waiting.reason
                    continue
                self.get(version)
            except (CheckpointError, NotFoundError) as exc:
                failed[mode] = exc.message
                self._failed(mode, version, exc.message)
                continue
            self._recovered(mode)
            with self._lock:
                self._champions[mode] = version
            changed[mode] = version
            log.info("%s champion is now %s", mode, version)
        self.unload_idle()
        return RefreshResult(champions=self.champions(), changed=changed, failed=failed)

    def _failed(self, mode: str, version: str | None, reason: str) -> None:
        """Record a failed load of ``mode``'s champion; logs only a new failure or a new reason."""
        with self._lock:
            before = self._failing.get(mode)
            same = before is not None and before.version == version
            failures = before.failures + 1 if same and before is not None else 1
            delay = self.backoff.delay(failures)
            self._failing[mode] = Failing(version, reason, failures, self._clock() + delay)
            kept = self._champions.get(mode)
            if kept is None:
                self._unserved[mode] = reason
        if same and before is not None and before.reason == reason:
            log.debug("the %s champion still does not load (%d failures); next try in %.0f s", mode, failures, delay)
        elif kept is None:
            log.error("no %s champion is served: %s; next try in %.0f s", mode, reason, delay)
        else:
            log.error("keeping the %s champion %s: %s; next try in %.0f s", mode, kept, reason, delay)

    def _recovered(self, mode: str) -> bool:
        """Forget ``mode``'s failure (its pointer names a version that loads, or none); whether it had one."""
        with self._lock:
            self._unserved.pop(mode, None)
            return self._failing.pop(mode, None) is not None

    def unload_idle(self) -> list[str]:
        """Unload non-champion versions unused for ``idle_seconds``; returns them."""
        now = self._clock()
        with self._lock:
            keep = set(self._champions.values())
            idle = [v for v in self._loaded if v not in keep and now - self._last_used[v] >= self.idle_seconds]
            for version in idle:
                del self._loaded[version], self._last_used[version]
                log.info("unloaded idle model %s", version)
        return idle
