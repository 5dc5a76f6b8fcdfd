"""The fused GRU against nn.GRU: the same outputs, states and gradients; and where the forecaster uses it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from models import fused_gru
from models.forecaster import Forecaster
from tests.factories import fused_inference_calls, tiny_config

AVX2 = fused_gru.FLAGS["AVX2"]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def built() -> None:
    assert fused_gru.available(), "the fused GRU did not build: see the warning logged"


def assert_equal(mine: torch.Tensor | None, reference: torch.Tensor | None, name: str) -> None:
    """Equal to float32 rounding: gradients sum thousands of terms, in another order than nn.GRU's."""
    assert mine is not None and reference is not None, name
    scale = float(reference.detach().abs().max())
    torch.testing.assert_close(mine, reference, rtol=1e-5, atol=1e-6 * max(scale, 1.0), msg=name)


def pair(inputs: int, hidden: int, layers: int = 1) -> tuple[nn.GRU, nn.GRU]:
    torch.manual_seed(0)
    ours = nn.GRU(inputs, hidden, num_layers=layers, batch_first=True)
    theirs = nn.GRU(inputs, hidden, num_layers=layers, batch_first=True)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


# hidden sizes of whole vectors (of 8 floats with AVX2, 16 with AVX-512), of none, and of both
@pytest.mark.parametrize(("batch", "steps", "inputs", "hidden"), [(64, 32, 32, 64), (5, 7, 3, 4), (3, 9, 2, 21)])
def test_outputs_states_and_gradients_equal_nn_gru_s(batch, steps, inputs, hidden):
    layers = 1
    ours, theirs = pair(inputs, hidden, layers)
    x = torch.randn(batch, steps, inputs)
    h0 = torch.randn(layers, batch, hidden)
    weights = (torch.randn(batch, steps, hidden), torch.randn(layers, batch, hidden))
    grads = []
    for use_fused, rnn in ((True, ours), (False, theirs)):
        xi, hi = x.clone().requires_grad_(), h0.clone().requires_grad_()
        y, h = fused_gru.gru(rnn, xi, hi) if use_fused else rnn(xi, hi)
        ((y * weights[0]).sum() + (h * weights[1]).sum()).backward()
        grads.append([y, h, xi.grad, hi.grad, *(p.grad for p in rnn.parameters())])
    for name, mine, reference in zip(["y", "h", "dx", "dh0", "dW_ih", "dW_hh", "db_ih", "db_hh"], *grads, strict=True):
        assert_equal(mine, reference, name)


def test_two_layers_equal_nn_gru_s():
    ours, theirs = pair(6, 16, layers=2)
    x = torch.randn(4, 12, 6)
    h0 = torch.zeros(2, 4, 16)
    (y, h), (y_ref, h_ref) = fused_gru.gru(ours, x, h0), theirs(x, h0)
    (y.sum() + h.sum()).backward()
    (y_ref.sum() + h_ref.sum()).backward()
    assert_equal(y, y_ref, "y")
    for (name, mine), reference in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        assert_equal(mine.grad, reference.grad, name)


def test_a_pass_whose_backward_waits_keeps_its_buffers_while_others_run():
    ours, theirs = pair(3, 8)
    first, second = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    y, _ = fused_gru.gru(ours, first, torch.zeros(1, 2, 8))
    for _ in range(2):  # two more passes of the same shape, each taking buffers and giving them back
        z, _ = fused_gru.gru(ours, second, torch.zeros(1, 2, 8))
        z.sum().backward()
    ours.zero_grad()
    y.sum().backward()
    theirs(first, torch.zeros(1, 2, 8))[0].sum().backward()
    for (name, mine), reference in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        assert_equal(mine.grad, reference.grad, name)


def test_a_forecaster_training_step_takes_the_fused_gru_with_nn_gru_s_gradients(monkeypatch):
    model = Forecaster(tiny_config("latent", hidden_size=16)).train()
    x, target = torch.randn(6, 20, 1), torch.randn(6, 20, 3, 3)
    assert fused_gru.applies(model.rnn, torch.randn(6, 20, model.config.conv_channels))
    fused, calls = fused_gru.gru, []

    def counted(*args):
        calls.append(args)
        return fused(*args)

    monkeypatch.setattr(fused_gru, "gru", counted)
    grads = []
    for use in (True, False):
        monkeypatch.setattr(fused_gru, "applies", lambda rnn, z, use=use: use)
        model.zero_grad()
        out, _ = model(x)
        ((out - target) ** 2).mean().backward()
        grads.append({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})
    assert len(calls) == 1
    assert grads[0].keys() == grads[1].keys() == {name for name, _ in model.named_parameters()}
    for name, reference in grads[1].items():
        assert_equal(grads[0][name], reference, name)


@pytest.mark.parametrize("case", ["no gradients", "float64", "LSTM"])
def test_nn_gru_runs_where_the_fused_one_does_not_apply(case):
    rnn: nn.Module = nn.LSTM(3, 8, batch_first=True) if case == "LSTM" else nn.GRU(3, 8, batch_first=True)
    x = torch.randn(2, 5, 3, dtype=torch.float64 if case == "float64" else torch.float32)
    with torch.set_grad_enabled(case != "no gradients"):
        assert not fused_gru.applies(rnn, x)  # without gradients, outside evaluation: serving's forwards
    with torch.no_grad(), fused_gru.evaluation():
        assert fused_gru.applies(rnn, x) == (case == "no gradients")
    assert fused_gru.applies(nn.GRU(3, 8, batch_first=True), torch.randn(2, 5, 3))


# across INFER_STEPS' spans, at whole vectors and not, one and two layers; no_grad (validation) and inference_mode
@pytest.mark.parametrize(("steps", "hidden", "layers"), [(30, 64, 1), (30, 21, 2), (7, 16, 1)])
@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
def test_evaluation_without_gradients_equals_nn_gru_s(monkeypatch, steps, hidden, layers, mode):
    monkeypatch.setattr(fused_gru, "INFER_STEPS", 8)
    calls = fused_inference_calls(monkeypatch)
    ours, theirs = pair(5, hidden, layers)
    x, h0 = torch.randn(3, steps, 5), torch.randn(layers, 3, hidden)
    with mode(), fused_gru.evaluation():
        assert fused_gru.applies(ours, x)
        y, h = fused_gru.gru(ours, x, h0)
    with mode():
        y_ref, h_ref = theirs(x, h0)
    assert len(calls) == layers and not y.requires_grad
    assert_equal(y, y_ref, "y")
    assert_equal(h, h_ref, "h")


def test_a_forecaster_s_validation_loss_and_states_are_nn_gru_s(monkeypatch):
    model = Forecaster(tiny_config("latent", hidden_size=16)).eval()
    x = torch.randn(4, 40, 1)
    with torch.no_grad():
        reference, ref_state = model(x)
    calls = fused_inference_calls(monkeypatch)
    with torch.no_grad(), fused_gru.evaluation():
        out, state = model(x)
    assert calls, "evaluation ran the fused GRU"
    assert_equal(out, reference, "out")
    assert_equal(state.hidden, ref_state.hidden, "state")


def test_disabled_by_the_environment_training_runs_nn_gru(monkeypatch):
    monkeypatch.setenv(fused_gru.DISABLE, "0")
    fused_gru._extension.cache_clear()
    try:
        assert not fused_gru.available()
        assert not fused_gru.applies(nn.GRU(3, 8, batch_first=True), torch.randn(2, 5, 3))
    finally:
        monkeypatch.delenv(fused_gru.DISABLE)
        fused_gru._extension.cache_clear()
    assert fused_gru.available()


def test_a_process_started_with_another_path_loads_the_built_kernel_without_building_it_again():
    # a ninja of another version on PATH (a system one) would compile the kernel again, mid-training
    extension = fused_gru._extension()
    assert extension is not None and extension.__file__ is not None
    built = Path(extension.__file__).stat().st_mtime_ns
    load = "from models import fused_gru; assert fused_gru.available()"
    env = {**os.environ, "PATH": os.pathsep.join(["/usr/bin", "/bin"])}
    subprocess.run([sys.executable, "-c", load], check=True, env=env, cwd=ROOT, timeout=120)
    assert Path(extension.__file__).stat().st_mtime_ns == built


def test_another_checkout_of_the_same_source_loads_the_same_build(tmp_path):
    # torch's build file names the source by its path: a shared build folder would be compiled again by each checkout
    extension = fused_gru._extension()
    assert extension is not None and extension.__file__ is not None
    built = Path(extension.__file__).stat().st_mtime_ns
    checkout = tmp_path / "models"
    checkout.mkdir()
    (checkout / "__init__.py").write_text("")
    for name in ("fused_gru.py", "fused_gru.cpp"):
        shutil.copy2(ROOT / "models" / name, checkout / name)
    load = "from models import fused_gru; e = fused_gru._extension(); assert e is not None; print(e.__file__)"
    done = subprocess.run(
        [sys.executable, "-c", load], check=True, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.stdout.strip() == extension.__file__
    assert Path(extension.__file__).stat().st_mtime_ns == built


def test_a_changed_source_builds_in_a_folder_of_its_own(tmp_path, monkeypatch):
    first, source = fused_gru._build_source(tmp_path, AVX2)
    assert source.read_bytes() == fused_gru.SOURCE.read_bytes() and source.parent == tmp_path / first
    stamp = source.stat().st_mtime_ns
    assert fused_gru._build_source(tmp_path, AVX2) == (first, source)
    assert source.stat().st_mtime_ns == stamp, "the copy is not written again: ninja would build again"
    changed = tmp_path / "changed.cpp"
    changed.write_bytes(fused_gru.SOURCE.read_bytes() + b"\n// changed\n")
    monkeypatch.setattr(fused_gru, "SOURCE", changed)
    second, other = fused_gru._build_source(tmp_path, AVX2)
    assert second != first and other.read_bytes() == changed.read_bytes()
    third, _ = fused_gru._build_source(tmp_path, fused_gru.FLAGS["AVX512"])
    assert third not in (first, second), "built for other vectors: a folder of its own too"
    # another environment's torch (another checkout's virtualenv): its headers' path is in the build commands
    monkeypatch.setattr(torch, "__file__", str(tmp_path / "elsewhere" / "torch" / "__init__.py"))
    fourth, _ = fused_gru._build_source(tmp_path, AVX2)
    assert fourth not in (first, second, third), "built against another torch: a folder of its own too"
    names = [first, second, third, fourth, "changed.cpp"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "elsewhere") == sorted(names)


AVX2_CHECK = """
import torch
from torch import nn
from models import fused_gru
assert torch.backends.cpu.get_cpu_capability() == "AVX2"
extension = fused_gru._extension()
assert extension is not None and fused_gru.extension_name(fused_gru.FLAGS["AVX2"]) in extension.__file__
for hidden in (64, 21):
    torch.manual_seed(0)
    ours = nn.GRU(5, hidden, batch_first=True)
    theirs = nn.GRU(5, hidden, batch_first=True)
    theirs.load_state_dict(ours.state_dict())
    x, h0 = torch.randn(6, 9, 5), torch.randn(1, 6, hidden)
    (y, h), (y_ref, h_ref) = fused_gru.gru(ours, x, h0), theirs(x, h0)
    (y.sum() + h.sum()).backward()
    (y_ref.sum() + h_ref.sum()).backward()
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-6)
    for mine, reference in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(mine.grad, reference.grad, rtol=1e-5, atol=1e-5)
"""


@pytest.mark.skipif(torch.backends.cpu.get_cpu_capability() != "AVX512", reason="an AVX-512 CPU runs both builds")
def test_the_avx2_build_equals_nn_gru_s_too():
    # a CPU with AVX2 and no AVX-512 loads the build of 8-float vectors: torch told to stop at AVX2 does the same
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2"}
    subprocess.run([sys.executable, "-c", AVX2_CHECK], check=True, env=env, cwd=ROOT, timeout=300)
