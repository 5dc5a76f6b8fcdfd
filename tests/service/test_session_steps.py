"""The changes a request makes, computed from the record it read: a batch's appends are judged one by one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from latentcast.errors import ConflictError, DataError, StateError
from models.calibration import AdaptiveOffsets
from models.predictor import Predictor
from models.series import Observation, SeriesState, Stepped, StoredStep
from service.sessions.replies import reply_body
from service.sessions.steps import Append, Change, plan_appends, plan_migration, state_of
from service.stores import SessionRecord, StoredReply
from service.stores.records import batch_digest
from tests.factories import tiny_checkpoint


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor.from_checkpoint(tiny_checkpoint("latent", seed=1), "latent-v1")


def record(predictor: Predictor, closes: list[float], session_id: str = "s", **fields: Any) -> SessionRecord:
    """A session warmed on ``closes``, all retained."""
    history = [Observation(c) for c in closes]
    state = predictor.state_to_bytes(predictor.advance(SeriesState(), history))
    values: dict[str, Any] = {"next_seq": len(history), "retained": tuple(history), "retained_count": len(history)}
    values.update(fields)
    return SessionRecord(session_id, "", "latent", "latent-v1", None, state=state, **values)


def test_each_append_of_a_batch_gets_its_own_answer(predictor: Predictor, closes: list[float]):
    fresh = record(predictor, closes[:20], "fresh")
    retried = closes[20:21]
    after = predictor.advance(predictor.state_from_bytes(fresh.state), [Observation(c) for c in retried])
    stored = StoredReply(20, batch_digest([Observation(c) for c in retried]), reply_body(after))
    done = record(predictor, closes[:21], "done", replies=(stored,))
    appends = [
        Append(fresh, 20, [Observation(closes[20])]),
        Append(done, 20, [Observation(c) for c in retried]),  # a retry: its stored reply
        Append(fresh, 20, [Observation(-1.0)]),  # a bad value: refused alone
        Append(fresh, 25, [Observation(closes[25])]),  # a gap
    ]
    ok, retry, bad, gap = plan_appends(predictor, appends, now=7.5)
    assert isinstance(ok, Change) and (ok.applied, ok.update.next_seq, ok.update.updated) == (1, 21, 7.5)
    forecast = predictor.forecast(after)  # through the torch forward; the append through the kernel
    assert ok.reply.forecast is not None and forecast is not None
    np.testing.assert_allclose(ok.reply.forecast.log_return, forecast.log_return, atol=1e-6)
    assert not isinstance(retry, Change | Exception)
    assert retry.next_seq == 21 and retry.forecast == predictor.forecast(after)
    assert isinstance(bad, DataError) and str(bad) == "observation 20: close is -1.0; prices must be positive"
    assert isinstance(gap, ConflictError)


def test_a_migration_replays_what_the_record_retains(predictor: Predictor, closes: list[float]):
    target = Predictor.from_checkpoint(tiny_checkpoint("latent", seed=3), "latent-v3")
    step = plan_migration(target, record(predictor, closes[:30]), now=1.0)
    assert step.applied == 30 and step.update.version == "latent-v3" and step.update.clear_replies
    assert step.reply.forecast == target.forecast_history([Observation(c) for c in closes[:30]])


def test_a_state_that_does_not_match_its_record_is_an_error(predictor: Predictor, closes: list[float]):
    broken = record(predictor, closes[:10], next_seq=11)
    with pytest.raises(StateError, match="state holds 10 observations, next_seq is 11"):
        state_of(predictor, broken)


def test_appends_stepped_as_arrays_change_what_one_by_one_stepping_changes(
    predictor: Predictor, closes: list[float], monkeypatch: pytest.MonkeyPatch
):
    done = record(predictor, closes[:21], "done")
    adaptive = AdaptiveOffsets.zeros(predictor.config.horizon, len(predictor.config.quantiles)).to_bytes()
    appends = [
        *(
            Append(record(predictor, closes[: 20 + k], f"live-{k}"), 20 + k, [Observation(closes[20 + k])])
            for k in range(5)
        ),
        Append(record(predictor, closes[:1], "one-close"), 1, [Observation(closes[1])]),  # no model state yet
        Append(record(predictor, closes[:20], "adaptive", calibration=adaptive), 20, [Observation(closes[20])]),
        Append(record(predictor, closes[:20], "two"), 20, [Observation(c) for c in closes[20:22]]),
        Append(done, 20, [Observation(c) for c in closes[20:22]]),  # an overlap: its new tail of one is applied
        Append(record(predictor, closes[:20], "broken", next_seq=21), 21, [Observation(closes[21])]),
        Append(record(predictor, closes[:20], "bad"), 20, [Observation(0.0)]),
        Append(record(predictor, closes[:20], "gap"), 22, [Observation(closes[22])]),
        Append(record(predictor, closes[:20], "bad-gap"), 22, [Observation(-1.0)]),  # the bad value is named
    ]
    lane, stepped = predictor._stored_by_kernel, []

    def recorded(steps: Sequence[StoredStep], picked: list[int]) -> dict[int, Stepped]:
        stepped.append(lane(steps, picked))
        return stepped[-1]

    monkeypatch.setattr(predictor, "_stored_by_kernel", recorded)
    calls: list[int] = []
    advance_stored = predictor.advance_stored

    def counted(steps: Sequence[StoredStep]) -> list[Stepped | Exception | None]:
        calls.append(len(steps))
        return advance_stored(steps)

    monkeypatch.setattr(predictor, "advance_stored", counted)
    together = plan_appends(predictor, appends, now=3.0)
    assert calls == [len(appends)]  # one call into the model for the whole batch
    assert sorted(stepped[0]) == [0, 1, 2, 3, 4, 8]  # the live sessions' one new observation each
    monkeypatch.setattr(predictor, "_stored_by_kernel", lambda steps, picked: {})
    alone = plan_appends(predictor, appends, now=3.0)
    assert [type(c) for c in together] == [Change] * 9 + [StateError, DataError, ConflictError, DataError]
    assert str(together[9]) == "session broken: state holds 20 observations, next_seq is 21"
    assert str(together[12]) == "observation 22: close is -1.0; prices must be positive"
    for got, want in zip(together, alone, strict=True):
        if isinstance(got, Exception):
            assert type(got) is type(want) and str(got) == str(want)
        else:
            # the kernel and the torch forward: the same arithmetic, rounded apart in float32
            assert isinstance(got, Change) and isinstance(want, Change)
            assert (got.update.next_seq, got.update.appended, got.applied) == (
                want.update.next_seq,
                want.update.appended,
                want.applied,
            )
            assert got.update.reply is not None and want.update.reply is not None
            assert got.update.reply.digest == want.update.reply.digest
            assert len(got.update.state) == len(want.update.state)
            assert got.reply.forecast is not None and want.reply.forecast is not None
            np.testing.assert_allclose(got.reply.forecast.log_return, want.reply.forecast.log_return, atol=1e-5)
