"""The changes a request makes, computed from the record it read: a batch's appends are judged one by one."""

from __future__ import annotations

from typing import Any

import pytest

from data.errors import ConflictError, DataError, StateError
from models.calibration import AdaptiveOffsets
from models.predictor import Observation, Predictor, SeriesState
from service import session_steps
from service.replies import reply_body
from service.session_steps import Append, Change, plan_appends, plan_migration, state_of
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
    assert ok.reply.forecast == predictor.forecast(after)
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


def test_appends_planned_as_arrays_change_what_one_by_one_planning_changes(
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
    ]
    lane, stepped = session_steps._step_together, []

    def recorded(*args: Any) -> dict[int, Change]:
        stepped.append(lane(*args))
        return stepped[-1]

    monkeypatch.setattr(session_steps, "_step_together", recorded)
    together = plan_appends(predictor, appends, now=3.0)
    assert sorted(stepped[0]) == [0, 1, 2, 3, 4, 8]  # the live sessions' one new observation each
    alone = plan_appends(predictor, appends, now=3.0, arrays_from=len(appends) + 1)
    assert len(stepped) == 1  # a batch smaller than arrays_from plans every append one by one
    assert [type(c) for c in together] == [Change] * 9 + [StateError, DataError, ConflictError]
    for got, want in zip(together, alone, strict=True):
        if isinstance(got, Exception):
            assert type(got) is type(want) and str(got) == str(want)
        else:
            assert isinstance(got, Change) and isinstance(want, Change)
            assert (got.update, got.applied) == (want.update, want.applied)
            assert got.reply.to_json() == want.reply.to_json()
