"""A session's shadow opened and advanced beside it, with no I/O (``service/live/shadows.py`` says what a shadow is).

``ShadowRunner.open`` warms the other mode's champion on a new session's
history; ``ShadowRunner.advance`` steps it by what an append applies and scores
what that settles. Neither ever changes what the session answers: a shadow
whose model is gone or whose state does not read is dropped, and the session
goes on without it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from latentcast.errors import ForecastError
from models.predictor import Observation, Predictor, SeriesState
from service.config import Settings
from service.live.scores import Issued, settle
from service.live.shadows import SHADOW_MODE, Shadow, ShadowScores, differences, losses, sampled
from service.model_pool import ModelPool

OTHER_MODE = {"ar": "latent", "latent": "ar"}


@dataclass(frozen=True)
class ShadowRunner:
    """Shadows for ``fraction`` of sessions, by the model ``champion(mode)`` names (the other mode's for a
    session of ``mode``), loaded by ``predictor(version)``; the store keeps ``keep`` loss differences per pair
    and horizon."""

    fraction: float
    champion: Callable[[str], str | None]
    predictor: Callable[[str], Predictor]
    keep: int

    def open(self, session_id: str, mode: str, history: Sequence[Observation]) -> Shadow | None:
        """The shadow of a new session of ``mode`` warmed on its ``history``, if the session is sampled."""
        version = self.champion(OTHER_MODE[mode]) if sampled(session_id, self.fraction) else None
        if version is None:
            return None
        try:
            predictor = self.predictor(version)
            state = predictor.advance(SeriesState(), history)
        except ForecastError:
            return None
        issued = Issued(version, predictor.config.horizon, len(predictor.config.quantiles))
        forecast = predictor.forecast(state)
        if forecast is not None and state.last_close is not None:
            issued = issued.with_forecast(forecast.as_of_seq, state.last_close, forecast.log_return)
        return Shadow(version, predictor.state_to_bytes(state), issued.to_bytes())

    def advance(
        self,
        shadow: Shadow,
        model: Issued,
        model_levels: tuple[float, ...],
        first_seq: int,
        appended: Sequence[Observation],
    ) -> tuple[Shadow | None, ShadowScores | None]:
        """``shadow`` after the observations ``first_seq, ...`` (``appended``), and what they settle of its
        forecasts, paired with what they settle of the session model's (``model``, before settling)."""
        try:
            predictor = self.predictor(shadow.version)
            config = predictor.config
            kept = Issued(shadow.version, config.horizon, len(config.quantiles))
            if shadow.issued:
                kept = Issued.from_bytes(shadow.issued)
            state = predictor.state_from_bytes(shadow.state)
            if state.n_obs != first_seq:  # out of step with the session: it cannot be scored alongside
                return None, None
            closes = [obs.close for obs in appended]
            paired = losses(kept, first_seq, closes, config.quantiles)
            settled, kept = settle(kept, first_seq, closes, config.quantiles)
            state = predictor.advance(state, appended)
        except ForecastError:
            return None, None
        forecast = predictor.forecast(state)
        if forecast is not None:
            kept = kept.with_forecast(forecast.as_of_seq, closes[-1], forecast.log_return)
        after = Shadow(shadow.version, predictor.state_to_bytes(state), kept.to_bytes())
        if not settled.count:
            return after, None
        diffs: dict[int, list[float]] = {}
        times: dict[int, list[str | None]] = {}
        if model_levels == config.quantiles and model.horizon == config.horizon:
            mine = losses(model, first_seq, closes, model_levels)
            diffs, times = differences(mine, paired, config.horizon, first_seq, [obs.time for obs in appended])
        mode = config.mode + SHADOW_MODE
        return after, ShadowScores(shadow.version, mode, settled, model.version, diffs, self.keep, times)


def shadow_runner(settings: Settings, pool: ModelPool) -> ShadowRunner | None:
    """The runner ``settings`` ask for (``shadow``, with live scores on), or None."""
    if settings.shadow <= 0 or not settings.live_scores:
        return None
    return ShadowRunner(settings.shadow, lambda mode: pool.champions().get(mode), pool.get, settings.shadow_pairs)
