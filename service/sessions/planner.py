"""``AppendPlanner``: appends planned in batches, micro-batched or a bulk request's, sized for the batching module.

What an append changes is decided by ``plan_appends`` (``service/sessions/steps.py``:
no I/O, no waiting). This module gives the batching module (``service/batching.py``)
the size of each batch (its observations) and ``inline_observations``, and
the batching module decides whether it runs on the event loop or in a worker
thread. Single appends to sessions of one model version that arrive together may
be gathered into one batch (``MicroBatcher``); a bulk request's appends are one
batch already.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from models.predictor import Predictor
from service.batching import Announcement, MicroBatcher, in_loop_or_thread
from service.metrics import ServiceMetrics
from service.sessions.replies import SessionReply
from service.sessions.scored_changes import scored
from service.sessions.shadow_steps import ShadowRunner
from service.sessions.steps import Append, Change, plan_appends

Planned = SessionReply | Change | Exception


@dataclass(frozen=True)
class BatchSettings:
    """Micro-batching of appends: off, or at most ``max_size`` per batch gathered for up to ``wait_seconds``."""

    enabled: bool = False
    wait_seconds: float = 0.002
    max_size: int = 64


class AppendPlanner:
    """Plans appends with ``plan_appends``, micro-batched as ``batching`` says."""

    def __init__(
        self,
        metrics: ServiceMetrics,
        batching: BatchSettings | None = None,
        inline_observations: int = 0,
        clock: Callable[[], float] = time.time,
        live_scores: bool = False,
        shadows: ShadowRunner | None = None,
    ) -> None:
        self.inline_observations = inline_observations
        self._live_scores = live_scores
        self._shadows = shadows
        self._clock = clock
        batching = batching or BatchSettings()
        self.batcher: MicroBatcher[Predictor, Append, SessionReply | Change] | None = None
        if batching.enabled:
            self.batcher = MicroBatcher(
                self._plan_batch,
                batching.wait_seconds,
                batching.max_size,
                on_batch=metrics.batched,
                size=observations_in,
                inline_up_to=inline_observations,
            )

    def announced(self) -> AbstractContextManager[Announcement | None]:
        """A single append on its way to ``plan``, for the batcher to see (``MicroBatcher.announced``);
        None when batching is off."""
        return nullcontext() if self.batcher is None else self.batcher.announced()

    async def plan(
        self, predictor: Predictor, append: Append, announcement: Announcement | None = None
    ) -> SessionReply | Change:
        """The reply (a retry) or the change that ``append`` makes, batched with others when enabled;
        ``announcement`` (``announced``) is withdrawn."""
        if self.batcher is not None:
            return await self.batcher.submit(predictor, append, announcement)
        [change] = await self.plan_many(predictor, [append])
        if isinstance(change, Exception):
            raise change
        return change

    async def plan_many(self, predictor: Predictor, appends: list[Append]) -> list[Planned]:
        """The appends of a bulk request planned as one batch, where ``in_loop_or_thread`` puts it."""
        return await in_loop_or_thread(
            self._plan_batch, observations_in(appends), self.inline_observations, predictor, appends
        )

    async def close(self) -> None:
        """Let the batches that are running finish."""
        if self.batcher is not None:
            await self.batcher.close()

    def _plan_batch(self, predictor: Predictor, appends: list[Append]) -> list[Planned]:
        planned = plan_appends(predictor, appends, self._clock())
        # with live scores, each change also says what it settles (``service/sessions/scored_changes.py``)
        return scored(predictor, appends, planned, self._shadows) if self._live_scores else planned


def observations_in(appends: list[Append]) -> int:
    """The size of a batch of appends, as the event loop or a thread takes it: its observations."""
    return sum(len(append.observations) for append in appends)
