"""Stateless forecasts, and what every forecasting reply shares: the model that made it.

Model work on long histories runs in worker threads (``anyio.to_thread``), so
that one slow forecast does not hold up the other requests; a session step small
enough (``LATENTCAST_INLINE_OBSERVATIONS``) runs on the event loop, where it
costs less than the hop to a thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from latentcast.errors import DataError, LimitError
from models.predictor import Predictor
from models.series import Forecast, Observation, SeriesState
from service.batching import in_thread
from service.model_pool import ModelPool

T = TypeVar("T")


@dataclass(frozen=True)
class ModelRef:
    """Which model answered: its mode and version."""

    mode: str
    version: str

    @classmethod
    def of(cls, predictor: Predictor) -> ModelRef:
        return cls(mode=predictor.config.mode, version=predictor.version)

    def to_dict(self) -> dict[str, str]:
        return {"mode": self.mode, "version": self.version}


@dataclass(frozen=True)
class ForecastReply:
    """A stateless forecast and the model that made it."""

    model: ModelRef
    forecast: Forecast

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model.to_dict(), "forecast": self.forecast.to_dict()}


def check_count(observations: Sequence[Observation], limit: int, what: str, setting: str) -> None:
    """``LimitError`` if there are more than ``limit`` observations."""
    if len(observations) > limit:
        raise LimitError(
            f"{what} has {len(observations)} observations; the limit is {limit} (LATENTCAST_{setting})", limit=limit
        )


@dataclass(frozen=True)
class ForecastItem:
    """One history to forecast, and which model: a version, or the champion of a mode."""

    observations: Sequence[Observation]
    mode: str | None = None
    version: str | None = None


class ForecastService:
    """``POST /v1/forecast``: a whole history in, the forecast after it out."""

    def __init__(self, pool: ModelPool, max_history: int) -> None:
        self.pool = pool
        self.max_history = max_history

    async def forecast(
        self, observations: Sequence[Observation], mode: str | None = None, version: str | None = None
    ) -> ForecastReply:
        """The forecast after ``observations`` from ``version``, or from the champion of ``mode``.

        ``DataError`` names the first bad observation, or says how many are needed.
        """
        [reply] = await self.forecast_many([ForecastItem(observations, mode, version)])
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def forecast_many(self, items: Sequence[ForecastItem]) -> list[ForecastReply | Exception]:
        """Each item's forecast, or why it has none; the histories of one model version run as one batch.

        All the work on observations (their checks, the model, the forecasts) runs in a worker thread:
        a thousand histories are seconds of it.
        """
        results: dict[int, ForecastReply | Exception] = {}
        groups: dict[str, tuple[Predictor, list[int]]] = {}
        resolved: dict[tuple[str | None, str | None], Predictor] = {}
        for i, item in enumerate(items):
            try:
                check_count(item.observations, self.max_history, "observations", "MAX_HISTORY")
                choice = (item.mode, item.version)
                if choice not in resolved:
                    resolved[choice] = await in_thread(self.pool.resolve, item.mode, item.version)
            except Exception as exc:  # refused alone: the other items go on
                results[i] = exc
                continue
            predictor = resolved[choice]
            groups.setdefault(predictor.version, (predictor, []))[1].append(i)
        for predictor, indices in groups.values():
            histories = [items[i].observations for i in indices]
            results.update(zip(indices, await in_thread(_forecasts, predictor, histories), strict=True))
        return [results[i] for i in range(len(items))]


def _forecasts(predictor: Predictor, histories: list[Sequence[Observation]]) -> list[ForecastReply | Exception]:
    """The forecast after each history from a zero state, or why it has none; the valid ones run as one batch."""
    answers: list[ForecastReply | Exception | None] = []
    for history in histories:
        try:
            predictor.validate(history)
            answers.append(None)
        except Exception as exc:  # refused alone: the other histories go on
            answers.append(exc)
    valid = [i for i, answer in enumerate(answers) if answer is None]
    states = predictor.advance_many([SeriesState()] * len(valid), [histories[i] for i in valid]) if valid else []
    for i, state in zip(valid, states, strict=True):
        answers[i] = _reply(predictor, state, len(histories[i]))
    return [answer for answer in answers if answer is not None]


def _reply(predictor: Predictor, state: SeriesState, count: int) -> ForecastReply | DataError:
    forecast = predictor.forecast(state)
    if forecast is None:
        needed = predictor.min_observations
        return DataError(
            f"{count} {'observation gives' if count == 1 else 'observations give'} no forecast: "
            f"{predictor.version} needs at least {needed}",
            needed=needed,
        )
    return ForecastReply(model=ModelRef.of(predictor), forecast=forecast)
