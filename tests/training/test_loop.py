from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from data import sources
from models import fused_gru
from models.config import ModelConfig
from models.forecaster import Forecaster
from models.state import StreamState
from tests.factories import fused_inference_calls
from training.batches import Batch, batches_for
from training.config import TrainConfig
from training.dataset import TrainingData
from training.loop import evaluate_loss, train


@pytest.fixture(scope="module")
def data() -> TrainingData:
    prices = sources.load("bundled", tickers=["IBM", "MSFT"], start="2004-01-01", end="2008-01-01")
    return TrainingData.prepare(prices, ("returns", "range"), horizon=2)


def tiny(mode: str, **fields) -> ModelConfig:
    return ModelConfig(
        mode=mode, n_features=2, conv_channels=4, conv_kernel=3, hidden_size=8, horizon=2, window=10, **fields
    )


FAST = TrainConfig(
    epochs=3, streams=4, bptt=25, burn_in=5, batch_size=32, windows_per_epoch=256, threads=1, progress=False
)


class Spy(Forecaster):
    """Records the state each call receives and returns."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.calls: list[tuple[StreamState | None, StreamState]] = []

    def forward(self, x, state=None, last=None, *, with_volatility=False):
        out, new, volatility = super().forward(x, state, last, with_volatility=True)
        if self.training:
            self.calls.append((state, new))
        return (out, new, volatility) if with_volatility else (out, new)


@pytest.mark.parametrize("cell", ["GRU", "LSTM"])
def test_latent_state_is_carried_between_chunks_but_detached(data, cell):
    torch.manual_seed(0)
    model = Spy(tiny("latent", cell=cell))
    config = TrainConfig(**{**FAST.to_dict(), "epochs": 1})
    source = batches_for(model.config, data, config)
    chunks = sum(1 for _ in source.epoch(np.random.default_rng(0)))
    assert chunks >= 3
    train(model, source, config)
    assert len(model.calls) == chunks
    assert model.calls[0][0] is None  # a stream starts from a zero state
    for (_, previous_out), (state_in, _) in zip(model.calls, model.calls[1:], strict=False):
        assert state_in is not None
        for carried, produced in zip(state_in.tensors(), previous_out.tensors(), strict=True):
            assert torch.equal(carried, produced)  # carried, not reset
            assert carried.grad_fn is None and not carried.requires_grad  # no gradient crosses the boundary
        assert any(t.abs().sum() > 0 for t in state_in.tensors())


def test_no_gradient_reaches_the_previous_chunk():
    torch.manual_seed(0)
    net = Forecaster(tiny("latent"))
    x = torch.randn(2, 10, 2, requires_grad=True)
    _, state = net(x[:, :5])
    out, _ = net(x[:, 5:], state.detach())
    out.sum().backward()
    assert x.grad is not None
    assert torch.count_nonzero(x.grad[:, :5]) == 0
    assert torch.count_nonzero(x.grad[:, 5:]) > 0


def test_ar_batches_start_from_a_zero_state_and_score_the_last_step(data):
    torch.manual_seed(0)
    model = Spy(tiny("ar"))
    source = batches_for(model.config, data, FAST)
    batch = next(source.epoch(np.random.default_rng(0)))
    assert batch.reset and batch.x.shape[1:] == (10, 2)
    assert batch.y.shape[1] == 1 and torch.isfinite(batch.y).all()  # the targets of the last step alone
    train(model, source, TrainConfig(**{**FAST.to_dict(), "epochs": 1}))
    assert all(state is None for state, _ in model.calls)


@pytest.mark.parametrize("mode", ["ar", "latent"])
def test_same_seed_gives_the_same_weights(data, mode):
    weights = []
    for _ in range(2):
        torch.manual_seed(7)
        model = Forecaster(tiny(mode))
        train(model, batches_for(model.config, data, FAST), FAST)
        weights.append(model.state_dict())
    for name, value in weights[0].items():
        assert torch.equal(value, weights[1][name]), name


class Scripted:
    """A batch source whose validation loss follows a script, via the targets."""

    train_rows = validation_rows = 4

    def __init__(self, targets: list[float]) -> None:
        self.targets = iter(targets)
        self.x = torch.zeros(1, 4, 2)

    def epoch(self, rng: np.random.Generator) -> Iterator[Batch]:
        yield Batch(self.x, torch.zeros(1, 4, 2), reset=True, targets=8)

    def validation(self) -> Iterator[Batch]:
        yield Batch(self.x, torch.full((1, 4, 2), next(self.targets)), reset=True, targets=8)


def test_early_stopping_restores_the_best_weights(monkeypatch):
    torch.manual_seed(0)
    model = Forecaster(tiny("latent"))
    snapshots = []
    original = evaluate_loss

    def recording(m, batches, world=None):
        snapshots.append({k: v.clone() for k, v in m.state_dict().items()})
        return original(m, batches, world)

    monkeypatch.setattr("training.loop.evaluate_loss", recording)
    # validation targets far away except at epoch 3: loss is smallest there, then never improves
    scripted = Scripted([50.0, 40.0, 0.0, 30.0, 30.0, 30.0, 30.0])
    result = train(model, scripted, TrainConfig(epochs=7, patience=3, lr=1e-2, threads=1, progress=False))
    assert result.best_epoch == 3
    assert result.epochs_run == 6  # three epochs without improvement after the best
    for name, value in model.state_dict().items():
        assert torch.equal(value, snapshots[2][name]), name
    assert not any(torch.equal(model.state_dict()["head.bias"], s["head.bias"]) for s in snapshots[3:])


def test_training_lowers_the_validation_loss(data):
    torch.manual_seed(0)
    model = Forecaster(tiny("latent"))
    source = batches_for(model.config, data, FAST)
    before = evaluate_loss(model, source.validation())
    result = train(model, source, TrainConfig(**{**FAST.to_dict(), "epochs": 5}))
    assert result.best_val_loss < before
    assert evaluate_loss(model, source.validation()) == pytest.approx(result.best_val_loss)


def test_a_refit_runs_every_epoch_without_validation(data):
    torch.manual_seed(0)
    model = Forecaster(tiny("latent"))
    result = train(model, batches_for(model.config, data, FAST), FAST, validate=False)
    assert (result.epochs_run, result.best_epoch) == (FAST.epochs, FAST.epochs)
    assert np.isnan(result.best_val_loss)
    assert all("val_loss" not in h for h in result.history)


def test_validation_runs_the_fused_gru_to_nn_gru_s_loss(data, monkeypatch):
    torch.manual_seed(0)
    model = Forecaster(tiny("latent"))
    source = batches_for(model.config, data, FAST)
    with monkeypatch.context() as nn_gru:  # the reference: a forward without gradients runs nn.GRU
        nn_gru.setattr(fused_gru, "applies", lambda rnn, x: torch.is_grad_enabled() and fused_gru.available())
        reference = evaluate_loss(model, source.validation())
    calls = fused_inference_calls(monkeypatch)
    assert evaluate_loss(model, source.validation()) == pytest.approx(reference, rel=1e-6)
    assert calls, "validation ran the fused GRU"


def test_without_threads_training_takes_the_free_cores_and_says_so(data, caplog, monkeypatch):
    monkeypatch.setattr("training.loop.free_cores", lambda processes: 2 if processes == 1 else 99)
    torch.set_num_threads(1)
    model = Forecaster(tiny("latent"))
    config = TrainConfig(**{**FAST.to_dict(), "epochs": 1, "threads": None})
    with caplog.at_level("INFO", logger="training.loop"):
        train(model, batches_for(model.config, data, config), config, desc="latent")
    assert torch.get_num_threads() == 2
    assert "latent: 2 torch threads (the cores free now)" in caplog.messages
    torch.set_num_threads(1)


@pytest.mark.parametrize("mode", ["ar", "latent"])
def test_a_step_budget_gives_both_modes_the_same_steps_and_carries_the_state_across_epochs(data, mode):
    torch.manual_seed(0)
    model = Spy(tiny(mode))
    config = TrainConfig(**{**FAST.to_dict(), "epochs": 3, "patience": 10, "epoch_steps": 7})
    source = batches_for(model.config, data, config)
    passes = sum(1 for _ in source.epoch(np.random.default_rng(0)))
    result = train(model, source, config)
    assert result.steps == 21 and result.epochs_run == 3 and len(result.history) == 3
    carried = [state is not None for state, _ in model.calls]
    if mode == "ar":
        assert not any(carried)
    else:  # epochs of 7 steps cut across passes: only each pass's first chunk starts from a zero state
        assert passes != 7 and carried.count(False) == -(-21 // passes)
