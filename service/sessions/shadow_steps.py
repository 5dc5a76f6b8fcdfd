"""A session's shadows opened and advanced beside it, with no I/O (``service/live/shadows.py`` says what they are).

``ShadowRunner.open`` warms a new session's shadows on its history (the other
mode's champion, and the newest registered challenger of each mode);
``ShadowRunner.advance_all`` steps the shadows of a planned batch by what their
appends apply, those of one version by one call of its model, and scores what
that settles. Neither ever changes what the session answers: a shadow whose
model is gone or whose state does not read is dropped, and the session goes on
without it. Only the registry's folder names are read, by ``newest_challenger``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from latentcast.errors import ForecastError
from models.config import MODES
from models.predictor import Predictor
from models.series import Observation, SeriesState, Stepped, StoredStep
from service.config import Settings
from service.live.scores import Issued, Settled, settle
from service.live.shadows import MAX_SHADOWS, SHADOW_MODE, Shadow, ShadowScores, differences, losses, sampled
from service.model_pool import ModelPool

OTHER_MODE = {"ar": "latent", "latent": "ar"}


@dataclass(frozen=True)
class ShadowStep:
    """A session's ``shadow`` to step by the observations ``first_seq, ...`` (``appended``) that an append
    applies; ``model`` holds the session model's forecasts awaiting outcomes before they settle, quantiles
    at ``model_levels``."""

    shadow: Shadow
    model: Issued
    model_levels: tuple[float, ...]
    first_seq: int
    appended: Sequence[Observation]


@dataclass(frozen=True)
class ShadowRunner:
    """Shadows for ``fraction`` of sessions: the other mode's champion (``champion(mode)`` names it) and, with
    ``challenger``, the newest registered challenger of each mode (``challenger(mode)``), loaded by
    ``predictor(version)``; the store keeps ``keep`` loss differences per pair and horizon."""

    fraction: float
    champion: Callable[[str], str | None]
    predictor: Callable[[str], Predictor]
    keep: int
    challenger: Callable[[str], str | None] | None = None

    def versions(self, session_id: str, mode: str, version: str) -> list[str]:
        """The versions that shadow a new session of ``mode`` on ``version``: none unless it is sampled, and
        never its own version or one twice (at most ``MAX_SHADOWS``)."""
        if not sampled(session_id, self.fraction):
            return []
        named = [self.champion(OTHER_MODE[mode])]
        if self.challenger is not None:
            named += [self.challenger(m) for m in MODES]
        out: list[str] = []
        for name in named:
            if name is not None and name != version and name not in out:
                out.append(name)
        return out[:MAX_SHADOWS]

    def open(self, session_id: str, mode: str, version: str, history: Sequence[Observation]) -> tuple[Shadow, ...]:
        """The shadows of a new session of ``mode`` on ``version``, each warmed on its ``history``; a shadow
        whose model does not load or read the history is left out."""
        shadows = []
        for name in self.versions(session_id, mode, version):
            try:
                predictor = self.predictor(name)
                state = predictor.advance(SeriesState(), history)
            except ForecastError:
                continue
            issued = Issued(name, predictor.config.horizon, len(predictor.config.quantiles))
            forecast = predictor.forecast(state)
            if forecast is not None and state.last_close is not None:
                issued = issued.with_forecast(forecast.as_of_seq, state.last_close, forecast.log_return)
            shadows.append(Shadow(name, predictor.state_to_bytes(state), issued.to_bytes()))
        return tuple(shadows)

    def advance_all(self, steps: Sequence[ShadowStep]) -> list[tuple[Shadow | None, ShadowScores | None]]:
        """Each step's shadow after its observations, and what they settle of its forecasts paired with what
        they settle of the session model's; ``(None, None)`` for a shadow dropped. The shadows of one version
        are stepped by one ``advance_stored`` of its model, the call a batch of the session's own appends makes."""
        out: list[tuple[Shadow | None, ShadowScores | None]] = [(None, None)] * len(steps)
        by_version: dict[str, list[int]] = {}
        for k, step in enumerate(steps):
            by_version.setdefault(step.shadow.version, []).append(k)
        for version, picked in by_version.items():
            for k, result in zip(picked, self._advance_version(version, [steps[k] for k in picked]), strict=True):
                out[k] = result
        return out

    def _advance_version(
        self, version: str, steps: list[ShadowStep]
    ) -> list[tuple[Shadow | None, ShadowScores | None]]:
        """``advance_all`` for shadows of one ``version``."""
        out: list[tuple[Shadow | None, ShadowScores | None]] = [(None, None)] * len(steps)
        try:
            predictor = self.predictor(version)
        except ForecastError:
            return out
        config = predictor.config
        ready: list[tuple[int, Issued, Settled, dict[int, float]]] = []
        for k, step in enumerate(steps):
            try:
                # forecasts that do not read (of an earlier format) are dropped: the shadow scores on from its next
                shape = (version, config.horizon, len(config.quantiles))
                kept = Issued.of(step.shadow.issued, *shape) or Issued(*shape)
                closes = [obs.close for obs in step.appended]
                paired = losses(kept, step.first_seq, closes, config.quantiles)
                settled, kept = settle(kept, step.first_seq, closes, config.quantiles)
            except ForecastError:
                continue
            ready.append((k, kept, settled, paired))
        # a state out of step with the session (n_obs is not first_seq) or an observation this shadow's model
        # refuses (it may read fields the session's does not) comes back as an error: that shadow is dropped
        stored = [
            StoredStep(
                steps[k].shadow.state, steps[k].first_seq, steps[k].appended, steps[k].first_seq, len(steps[k].appended)
            )
            for k, *_ in ready
        ]
        for (k, kept, settled, paired), stepped in zip(ready, predictor.advance_stored(stored), strict=True):
            if isinstance(stepped, Stepped):
                out[k] = self._after(predictor, steps[k], stepped, kept, settled, paired)
        return out

    def _after(
        self,
        predictor: Predictor,
        step: ShadowStep,
        stepped: Stepped,
        kept: Issued,
        settled: Settled,
        paired: dict[int, float],
    ) -> tuple[Shadow, ShadowScores | None]:
        """The shadow as ``stepped`` left it, its next forecast among ``kept``, and its scores if it settled any."""
        config = predictor.config
        forecast = stepped.forecast
        if forecast is not None:
            kept = kept.with_forecast(forecast.as_of_seq, step.appended[-1].close, forecast.log_return)
        after = Shadow(step.shadow.version, stepped.state, kept.to_bytes())
        if not settled.count:
            return after, None
        diffs: dict[int, list[float]] = {}
        times: dict[int, list[str | None]] = {}
        model = step.model
        if step.model_levels == config.quantiles and model.horizon == config.horizon:
            closes = [obs.close for obs in step.appended]
            mine = losses(model, step.first_seq, closes, step.model_levels)
            times_in = [obs.time for obs in step.appended]
            diffs, times = differences(mine, paired, config.horizon, step.first_seq, times_in)
        mode = config.mode + SHADOW_MODE
        return after, ShadowScores(step.shadow.version, mode, settled, model.version, diffs, self.keep, times)


def shadow_runner(settings: Settings, pool: ModelPool) -> ShadowRunner | None:
    """The runner ``settings`` ask for (``shadow``, with live scores on; ``shadow_challengers``), or None."""
    if settings.shadow <= 0 or not settings.live_scores:
        return None
    challenger = functools.partial(newest_challenger, pool) if settings.shadow_challengers else None
    return ShadowRunner(
        settings.shadow, lambda mode: pool.champions().get(mode), pool.get, settings.shadow_pairs, challenger
    )


def newest_challenger(pool: ModelPool, mode: str) -> str | None:
    """The registry's newest version of ``mode`` if it is not the mode's champion (``Registry.newest``: only
    folder names are read); a version that does not load is dropped as a shadow when its session opens."""
    newest = pool.registry.newest(mode)
    return None if newest == pool.champions().get(mode) else newest


def _stored(step: ShadowStep) -> StoredStep:
    """The shadow's step as ``Predictor.advance_stored`` reads it: its state, then every appended observation."""
    return StoredStep(step.shadow.state, step.first_seq, step.appended, step.first_seq, len(step.appended))
