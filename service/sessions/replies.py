"""``SessionReply``: what opening a session or posting to it answers, and its compact stored form.

A reply without a forecast says why: ``needs``, how many more observations the
session must read before its first forecast (an ar model reads a full window of
returns, a latent one a first return).

A retried batch is answered with the reply its first try got. Stores keep that
reply as the few values it is made from (``reply_body``), a fraction of its
JSON's size, and ``stored_reply`` rebuilds it to the same bytes.
"""

from __future__ import annotations

import functools
import math
import struct
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import orjson

from models.predictor import Predictor
from models.series import Forecast, SeriesState
from service.forecasting import ModelRef

# a stored reply's body: format, next_seq, last close; the model's float32 output follows,
# then, in format 2, the session's adaptive offsets as float64 (H, Q)
_REPLY_BODY = struct.Struct("<BQd")
REPLY_FORMAT = 1
ADAPTIVE_REPLY_FORMAT = 2


@dataclass(frozen=True)
class SessionReply:
    """What opening a session or posting to it answers."""

    session_id: str
    model: ModelRef
    next_seq: int
    forecast: Forecast | None
    needs: int = 0  # observations still to come before the first forecast (0 once there is one)

    def to_dict(self) -> dict[str, Any]:
        if self.forecast is None:
            return {
                "session_id": self.session_id,
                "model": self.model.to_dict(),
                "next_seq": self.next_seq,
                "forecast": None,
                "needs": self.needs,
            }
        return {
            "session_id": self.session_id,
            "model": self.model.to_dict(),
            "next_seq": self.next_seq,
            "forecast": self.forecast.to_dict(),
        }

    def to_json(self) -> bytes:
        """Compact JSON, encoded once: an append stores it for retries and sends it as it is."""
        return self._json

    @functools.cached_property
    def _json(self) -> bytes:
        return orjson.dumps(self.to_dict())


def observations_needed(predictor: Predictor, n_obs: int) -> int:
    """How many more observations a session of ``predictor`` that has read ``n_obs`` needs to forecast."""
    return max(predictor.min_observations - n_obs, 0)


def session_reply(
    session_id: str, predictor: Predictor, n_obs: int, forecast: Forecast | None, model: ModelRef | None = None
) -> SessionReply:
    """The reply of a session of ``predictor`` after ``n_obs`` observations (``model``: its ref, if made already)."""
    needs = 0 if forecast is not None else observations_needed(predictor, n_obs)
    return SessionReply(session_id, model or ModelRef.of(predictor), n_obs, forecast, needs)


class Replied(Protocol):
    """What a reply reads of a stream's state (a ``SeriesState``, or ``Stepped`` from the model's batch step)."""

    @property
    def n_obs(self) -> int: ...

    @property
    def last_close(self) -> float | None: ...

    @property
    def output(self) -> np.ndarray | None: ...


def reply_body(state: Replied, offsets: np.ndarray | None = None) -> bytes:
    """What rebuilds the reply after ``state`` with the same model, in a fraction of its JSON's bytes.

    The reply is a function of the session's model (fixed until a migration, which drops the
    stored replies), the seq, the last close and the model's output, so those are all a
    stored reply needs; it is rebuilt to the same bytes. A session with adaptive offsets
    keeps the ``offsets`` its forecast was made with too.
    """
    output = b"" if state.output is None else state.output.astype("<f4").tobytes()
    close = math.nan if state.last_close is None else state.last_close
    if offsets is None or state.output is None:
        return _REPLY_BODY.pack(REPLY_FORMAT, state.n_obs, close) + output
    return _REPLY_BODY.pack(ADAPTIVE_REPLY_FORMAT, state.n_obs, close) + output + offsets.astype("<f8").tobytes()


def stored_reply(predictor: Predictor, session_id: str, body: bytes) -> SessionReply | None:
    """The reply ``reply_body`` was made from; None for a body in another format (not answered from)."""
    horizon = predictor.config.horizon
    size = horizon * len(predictor.config.quantiles)
    sizes = {
        REPLY_FORMAT: (_REPLY_BODY.size, _REPLY_BODY.size + 4 * size),
        ADAPTIVE_REPLY_FORMAT: (_REPLY_BODY.size + 12 * size,),
    }
    if not body or len(body) not in sizes.get(body[0], ()):
        return None
    _, n_obs, close = _REPLY_BODY.unpack_from(body)
    output = offsets = None
    if len(body) > _REPLY_BODY.size:
        output = np.frombuffer(body, dtype="<f4", count=size, offset=_REPLY_BODY.size).reshape(horizon, -1)
    if body[0] == ADAPTIVE_REPLY_FORMAT:
        offsets = np.frombuffer(body, dtype="<f8", offset=_REPLY_BODY.size + 4 * size).reshape(horizon, -1)
    state = SeriesState(n_obs=n_obs, last_close=None if math.isnan(close) else close, output=output)
    return session_reply(session_id, predictor, n_obs, predictor.forecast(state, offsets))
