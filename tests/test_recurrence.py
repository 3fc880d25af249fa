"""Every fast backend against the per-step autograd reference: outputs and all gradients.

The triton backend runs compiled on a GPU when one is present, else in Triton's interpreter
(TRITON_INTERPRET=1, set in conftest); the torch backend runs on the GPU too when present.
"""

import pytest
import torch

from arnn.recurrence import recurrence, resolve_backend, triton_available

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")

# (batch, steps, inputs, hidden): batch sizes that are no multiple of a tile, a non-power of
# two hidden size, T=1.
SHAPES = [(3, 1, 2, 8), (5, 7, 3, 6), (17, 9, 1, 12), (2, 4, 5, 33), (19, 3, 2, 130)]
FAST_BACKENDS = ["torch", "cpu", "triton"]


def _inputs(batch, steps, m, n, gated, dtype, seed, h0_nonzero=True):
    g = torch.Generator().manual_seed(seed)
    k = 2 if gated else 1

    def r(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=dtype) * scale).requires_grad_()

    x = r(batch, steps, m)
    weight_ih = r(k * n, m, scale=m**-0.5)
    bias = r(k * n, scale=0.1)
    matrix = r(n, n, scale=n**-0.5)
    h0 = r(batch, n, scale=0.5) if h0_nonzero else torch.zeros(batch, n, dtype=dtype)
    return x, weight_ih, bias, matrix, h0


def _outputs_and_grads(backend, args, eps, gated, seed, device="cpu"):
    inputs = [t for t in args if t.requires_grad]
    x, weight_ih, bias, matrix, h0 = (t.to(device) for t in args)
    states = recurrence(x, weight_ih, bias, matrix, eps, gated, h0, backend)
    # A loss that touches every state, with random weights, so every step's gradient matters.
    w = torch.randn(states.shape, generator=torch.Generator().manual_seed(seed), dtype=x.dtype)
    grads = torch.autograd.grad((states * w.to(device)).sum(), inputs)
    return states.cpu(), grads


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("gated", [False, True], ids=["eq12", "eq13"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}_T{}_m{}_n{}".format(*s))
def test_backend_matches_reference(backend, gated, shape):
    assert backend != "triton" or triton_available(DEVICE)
    if backend == "cpu" and DEVICE.type == "cuda":
        pytest.skip("the cpu backend computes on the CPU")
    args = _inputs(*shape, gated, torch.float32, seed=sum(shape))
    ref_states, ref_grads = _outputs_and_grads("reference", args, 0.2, gated, 0)
    states, grads = _outputs_and_grads(backend, args, 0.2, gated, 0, DEVICE)
    torch.testing.assert_close(states, ref_states, rtol=1e-5, atol=1e-5)
    names = ["x", "weight_ih", "bias", "matrix", "h0"]
    for name, g, ref in zip(names, grads, ref_grads, strict=True):
        torch.testing.assert_close(g, ref, rtol=1e-4, atol=1e-5, msg=f"d{name}")


@pytest.mark.parametrize("backend", ["torch", "cpu"])
@pytest.mark.parametrize("gated", [False, True], ids=["eq12", "eq13"])
@pytest.mark.parametrize("last_only", [False, True], ids=["states", "last"])
def test_gradcheck_float64_against_finite_differences(backend, gated, last_only):
    """Every input's gradient against central finite differences in float64 (the cpu backend's
    float64 path: the recursion of its float kernel, with the C library's tanh and exp)."""
    args = _inputs(3, 4, 2, 18, gated, torch.float64, seed=7)
    assert torch.autograd.gradcheck(
        lambda x, w, b, a, h0: recurrence(x, w, b, a, 0.3, gated, h0, backend,
                                          last_only=last_only), args)


def test_zero_initial_state_is_the_default():
    args = _inputs(2, 3, 2, 4, True, torch.float64, seed=8, h0_nonzero=False)
    x, w, b, a, h0 = args
    torch.testing.assert_close(
        recurrence(x, w, b, a, 0.1, True, None, "torch"),
        recurrence(x, w, b, a, 0.1, True, h0, "reference"),
    )


def test_auto_backend_on_cpu_is_the_compiled_kernel():
    assert resolve_backend("auto", "cpu") == "cpu"
    with pytest.raises(ValueError, match="backend='cudnn'"):
        resolve_backend("cudnn", "cpu")


def test_training_curves_agree_across_backends(tmp_path):
    """A few optimiser steps from the same seed: same losses and parameters per backend."""
    from tests.fixtures import make_loop

    curves, params = {}, {}
    for backend in ("reference", "torch", "cpu", "triton"):
        loop = make_loop(f"model.backend={backend}", "model.hidden_size=8",
                         "train.batch_size=4", "device=cpu", "optimizer.lr=0.5")
        assert loop.model.cell.backend == backend
        curves[backend] = torch.stack(
            [loop.train_step(*loop.task.train_batch(loop.parts.sampler.next()))
             for _ in range(3)]
        )
        params[backend] = torch.cat([p.detach().flatten() for p in loop.model.parameters()])
    for backend in ("torch", "cpu", "triton"):
        torch.testing.assert_close(curves[backend], curves["reference"], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(params[backend], params["reference"], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("model", ["arnn", "gated_arnn", "ablation"])
def test_models_match_reference_backend(model, backend):
    """Each recurrent model through each backend: hidden states and every parameter's
    gradient (the antisymmetric parameterisation included) equal the reference's."""
    from arnn.models import build_cell

    torch.manual_seed(11)
    ref = build_cell(model, 3, 20, eps=0.3, gamma=0.05, sigma_w=2.0, backend="reference")
    fast = build_cell(model, 3, 20, eps=0.3, gamma=0.05, sigma_w=2.0, backend=backend)
    fast.load_state_dict(ref.state_dict())
    fast.to(DEVICE)
    x = torch.randn(7, 6, 3)
    out_ref, out = ref(x), fast(x.to(DEVICE))
    torch.testing.assert_close(out.cpu(), out_ref, rtol=1e-5, atol=1e-6)
    w = torch.randn(out_ref.shape)
    (out_ref * w).sum().backward()
    (out * w.to(DEVICE)).sum().backward()
    for (name, p_ref), p in zip(ref.named_parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(p.grad.cpu(), p_ref.grad, rtol=1e-4, atol=1e-5, msg=name)


SMALL_SHAPES = [pytest.param("dataset=digits", id="digits_T64_m1_n32"),
                pytest.param("dataset=noise_digits", id="noise_digits_T300_m8_n32"),
                pytest.param("dataset=mnist", id="mnist_T784_m1_n128", marks=pytest.mark.slow)]


@pytest.mark.parametrize("model", ["arnn", "gated_arnn"])
@pytest.mark.parametrize("dataset", SMALL_SHAPES)
def test_three_training_steps_match_the_reference(model, dataset, mnist_dir):
    """The cpu backend trains as the reference does: after 3 optimiser steps of batch 128 at
    the issue's shapes (their presets), the parameters within 1e-5 of the reference's,
    relative to their norm. (Element by element, Adagrad's first step divides each gradient
    element by itself: a near-zero gradient's rounding moves its parameter by up to lr, for the
    torch backend as much as for this one.)"""
    from tests.fixtures import make_loop

    params = {}
    for backend in ("reference", "cpu"):
        loop = make_loop(f"model={model}", dataset, f"model.backend={backend}", "device=cpu",
                         f"data_dir={mnist_dir}", "dataset.train_limit=512",
                         "dataset.test_limit=10", "dataset.val_size=0")
        for _ in range(3):
            loop.train_step(*loop.task.train_batch(loop.parts.sampler.next()))
        params[backend] = torch.cat([p.detach().flatten() for p in loop.model.parameters()])
    difference = (params["cpu"] - params["reference"]).norm() / params["reference"].norm()
    assert difference < 1e-5, difference


def test_the_cpu_kernels_tanh_and_sigmoid_are_close_to_float64():
    """The kernel's tanh and sigmoid over the float range that matters (their whole error
    curve: `scripts/bench.py --tanh-error`)."""
    from arnn.recurrence import cpu_backend

    x = torch.linspace(-20, 20, 400_001)
    for name, exact in (("tanh", torch.tanh), ("sigmoid", torch.sigmoid)):
        error = (cpu_backend.pointwise(name, x).double() - exact(x.double())).abs().max()
        assert error < 3e-7, (name, error)
    special = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0] * 4)
    out = cpu_backend.pointwise("tanh", special)
    assert out[0].isnan() and out[1:4].tolist() == [1.0, -1.0, 0.0]


def test_without_a_compiler_the_run_says_so_and_uses_the_torch_backend(tmp_path):
    """No C++ compiler (CXX names none, PATH holds none) and nothing cached: one warning line,
    the torch backend computes, the run completes."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    from tests.fixtures import ROOT

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    env = {**os.environ, "CXX": "no-such-compiler", "PATH": str(bin_dir),
           "ARNN_CACHE_DIR": str(tmp_path / "cache")}
    assert shutil.which("g++", path=str(bin_dir)) is None
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), "train.steps=5",
                           "model.hidden_size=8", f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in (proc.stdout + proc.stderr).splitlines()
             if "cpu backend is unavailable" in line]
    assert len(lines) == 1 and "no C++ compiler" in lines[0] and "Traceback" not in proc.stderr
    assert json.loads((tmp_path / "run" / "results.json").read_text())["backend"] == "torch"
