"""Figure 1's systems behave as the paper says; gradient flow over time."""

import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from arnn.dynamics import FIGURE1_INITIAL_STATES, figure1_systems, gradient_flow, saturation
from arnn.models import build_cell
from tests.fixtures import PAPER_POINT, ROOT, built, compose_cfg, run_cli, run_config

SYSTEMS = {s.title.split(",")[1].split()[0]: s for s in figure1_systems() if s.residual}


def _norms(system, h0):
    path = system.trajectory(h0)
    assert path.shape == (51, 2)
    return np.linalg.norm(path, axis=1)


@pytest.mark.parametrize("h0", FIGURE1_INITIAL_STATES)
def test_figure1_residual_systems(h0):
    grow = _norms(SYSTEMS["W+"], h0)
    assert grow[-1] > 5 * grow[0]  # positive real parts: explodes
    shrink = _norms(SYSTEMS["W-"], h0)
    assert shrink[-1] < 0.01 * shrink[0]  # negative real parts: collapses
    spiral = _norms(SYSTEMS["W0"], h0)
    assert spiral[-1] >= 1.25 * spiral[0]  # forward Euler on a rotation spirals outward
    circle = _norms(SYSTEMS["Wdiff"], h0)
    assert np.all(np.abs(circle / circle[0] - 1) <= 0.10)  # diffusion keeps it on the circle


def test_figure1_systems_use_the_package_recurrence():
    w0 = SYSTEMS["W0"]
    h = torch.tensor([[0.0, 0.5]], dtype=torch.float64)
    expected = h + 0.1 * torch.tanh(h @ w0.matrix.double().T)
    torch.testing.assert_close(w0.step(h, 1)[0], expected)
    vanilla = figure1_systems()[1]  # W = I: h_t = tanh(h_{t-1})
    torch.testing.assert_close(vanilla.step(h, 1)[0], torch.tanh(h))


@pytest.mark.slow
def test_plot_dynamics_script_writes_png_and_pdf(tmp_path):
    out = tmp_path / "fig1.png"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "plot_dynamics.py"), "--out",
                    str(out)], check=True, capture_output=True)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20000
    assert out.with_suffix(".pdf").read_bytes()[:4] == b"%PDF"


def _flow(model_name, dataset, data_dir, *overrides, batch=8):
    cfg_overrides = (f"model={model_name}", f"dataset={dataset}", "device=cpu",
                     f"data_dir={data_dir}", *overrides)
    _, parts = built(*cfg_overrides)
    model, task = parts.model, parts.task
    x, y = next(task.eval_batches(batch))
    return gradient_flow(model, x, y)


@pytest.mark.parametrize("model", ["lstm", "arnn", "gated_arnn"])
def test_gradient_flow_one_finite_norm_per_step(model):
    norms = _flow(model, "digits", "unused", "model.hidden_size=16")
    assert norms.shape == (64,) and np.all(np.isfinite(norms)) and norms[-1] > 0


@pytest.mark.slow
def test_gradient_flow_over_784_steps_of_real_mnist(mnist_dir, monkeypatch):
    """At the paper's Appendix C point eps 0.01, gamma 0.01, sigma_w 1 (pinned: presets move)
    the gradient neither vanishes nor explodes over 784 steps; the same weights made symmetric
    (W + W^T: real eigenvalues up to ~2 sigma_w) explode it. So the antisymmetric structure is
    what keeps it, not sigma_w=0."""
    def symmetric(cell):
        w = cell.matrix.upper()
        return w + w.t() - cell.matrix.gamma * torch.eye(cell.hidden_size)

    for model in ("arnn", "gated_arnn"):
        args = (model, "mnist", mnist_dir, "dataset.test_limit=8", *PAPER_POINT)
        norms = _flow(*args)
        assert len(norms) == 784
        assert 0.1 < norms[0] / norms[-1] < 10, model  # neither vanishes nor explodes
        with monkeypatch.context() as m:
            m.setattr(type(build_cell(model, 1, 2)), "recurrent_matrix", symmetric)
            broken = _flow(*args)
        assert broken[0] / broken[-1] > 30, model  # measured: arnn 1292, gated_arnn 78
    lstm = _flow("lstm", "mnist", mnist_dir, "dataset.test_limit=8")
    assert lstm[0] < 1e-3 * lstm[-1]  # the LSTM's gradient decays by orders of magnitude


def test_gradient_flow_figure_in_tensorboard(tmp_path):
    run_config(compose_cfg("model.hidden_size=8", "train.steps=2", "train.gradient_flow=true",
                    "device=cpu"), tmp_path)
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert "gradient_flow" in acc.Tags()["images"]


def test_gradient_flow_script_draws_flow_and_eigenvalues(tmp_path, capsys):
    """scripts/gradient_flow.py's command line: both figures; the antisymmetric model's
    eigenvalues all have real part -gamma, the ablation's unstructured matrix's do not."""
    from arnn.gradient_flow_cli import main

    main(["--models", "arnn,ablation,lstm", "--set", "model.hidden_size=8", "--out",
          str(tmp_path / "flow.png"), "--eigenvalues", str(tmp_path / "eig.png")])
    out = capsys.readouterr().out
    for name in ("flow.png", "eig.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    gamma = compose_cfg("model=arnn").model.gamma
    line = next(x for x in out.splitlines() if x.strip().startswith("arnn (init): Re(mu)"))
    low, high = (float(v) for v in line.split("[")[1].split("]")[0].split(", "))
    assert low == pytest.approx(-gamma, abs=1e-9) and high == pytest.approx(-gamma, abs=1e-9)
    ablation = next(x for x in out.splitlines() if x.strip().startswith("ablation (init): Re"))
    assert float(ablation.split("[")[1].split(", ")[0]) < -gamma - 0.1
    assert "lstm (init): Re(mu)" not in out  # no recurrent matrix of its own


def test_gradient_flow_of_a_trained_run_and_of_a_damaged_one(tmp_path, capsys):
    """--run reads the run's config and checkpoint (within bounds); a damaged checkpoint is
    one line and exit 2."""
    from arnn.checkpoint import CHECKPOINT
    from arnn.gradient_flow_cli import main

    run_cli("model.hidden_size=8", "train.steps=2", "device=cpu",
            f"hydra.run.dir={tmp_path / 'run'}")
    main(["--models", "", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "f.png")])
    out = capsys.readouterr().out
    assert "gated_arnn (run): ||dL/dh_1||" in out
    assert re.search(r"gated_arnn \(run\): \|a_t\| > 2 for [\d.]+% of the tanh's inputs", out)
    ckpt = tmp_path / "run" / CHECKPOINT
    ckpt.write_bytes(ckpt.read_bytes()[:-10])
    with pytest.raises(SystemExit) as info:
        main(["--models", "", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "g.png")])
    assert info.value.code == 2 and "corrupt or truncated" in capsys.readouterr().err


def test_the_script_runs_each_recurrence_once_and_measures_as_each_function_alone(monkeypatch):
    """scripts/gradient_flow.py's measures share one pass of each model's recurrence and give
    what gradient_flow, gate_trace and saturation give when each runs the recurrence itself."""
    from arnn import models
    from arnn.dynamics import gate_trace
    from arnn.gradient_flow_cli import curves

    overrides = ("dataset=digits", "data_dir=unused", "device=cpu", "model.hidden_size=8")
    configs = {name: (compose_cfg(f"model={name}", *overrides), None)
               for name in ("gated_arnn", "lstm")}
    passes = []
    for cls in (models._AntisymmetricFamily, models.LSTMCell):
        monkeypatch.setattr(cls, "step_states",
                            lambda self, x, run=cls.step_states: passes.append(x) or run(self, x))
    flows, _, gates, saturated = curves(configs, 4, None)
    assert len(passes) == 2 and set(gates) == set(saturated) == {"gated_arnn"}
    monkeypatch.undo()
    _, parts = built("model=gated_arnn", *overrides)
    x, y = next(parts.task.eval_batches(4))
    np.testing.assert_allclose(flows["gated_arnn"], gradient_flow(parts.model, x, y), rtol=1e-5)
    np.testing.assert_array_equal(gates["gated_arnn"], gate_trace(parts.model.cell, x))
    np.testing.assert_array_equal(saturated["gated_arnn"], saturation(parts.model.cell, x))


def test_the_gate_trace_is_eq_13s_gate_written_out():
    """gate_trace against the gate computed by hand, step by step, in float64."""
    import torch

    from arnn.dynamics import gate_trace
    from arnn.models import build_cell

    torch.manual_seed(3)
    cell = build_cell("gated_arnn", 2, 4, eps=0.3, gamma=0.1, sigma_w=1.0,
                      backend="reference").double()
    with torch.no_grad():
        cell.bias.uniform_(-1, 1)
    x = torch.randn(5, 6, 2, dtype=torch.float64)
    a, h, expected = cell.recurrent_matrix().detach(), torch.zeros(5, 4, dtype=torch.float64), []
    vh, vz, bh, bz = cell.weight_ih[:4], cell.weight_ih[4:], cell.bias[:4], cell.bias[4:]
    with torch.no_grad():
        for t in range(6):
            z = torch.sigmoid(h @ a.T + x[:, t] @ vz.T + bz)
            expected.append(z.flatten().numpy())
            h = h + 0.3 * z * torch.tanh(h @ a.T + x[:, t] @ vh.T + bh)
    assert np.allclose(gate_trace(cell, x), np.stack(expected), rtol=0, atol=1e-12)
    assert gate_trace(build_cell("arnn", 2, 4), x.float()) is None


@pytest.mark.parametrize("name", ["arnn", "gated_arnn", "ablation"])
def test_saturation_counts_the_candidates_saturated_inputs_written_out(name):
    """saturation against the candidate's pre-activation A h_{t-1} + V_h x_t + b_h computed by
    hand along eq. 12 / eq. 13, step by step, in float64."""
    torch.manual_seed(4)
    cell = build_cell(name, 2, 4, eps=0.3, gamma=0.1, sigma_w=3.0, backend="reference").double()
    with torch.no_grad():
        cell.bias.uniform_(-1, 1)
    x = torch.randn(5, 6, 2, dtype=torch.float64)
    m, h, expected = cell.recurrent_matrix().detach(), torch.zeros(5, 4, dtype=torch.float64), []
    vh, bh = cell.weight_ih[:4], cell.bias[:4]
    with torch.no_grad():
        for t in range(6):
            a = h @ m.T + x[:, t] @ vh.T + bh
            expected.append((a.abs() > 1.0).double().mean().item())
            z = torch.sigmoid(h @ m.T + x[:, t] @ cell.weight_ih[4:].T + cell.bias[4:]) \
                if cell.gated else 1.0
            h = h + 0.3 * z * torch.tanh(a)
    fraction = saturation(cell, x, level=1.0)
    assert 0 < fraction.mean() < 1  # the check sees both sides of the level
    assert np.allclose(fraction, expected, rtol=0, atol=1e-12)
    assert saturation(build_cell("lstm", 2, 4), x.float()) is None
