"""The four models against the paper: equations, initialisation, parameter counts."""


import pytest
import torch

from arnn.models import (
    AblationCell,
    AntisymmetricMatrix,
    AntisymmetricRNNCell,
    GatedAntisymmetricRNNCell,
    LSTMCell,
    SequenceClassifier,
    build_cell,
    count_parameters,
)
from tests.fixtures import compose_cfg


def _direct_eq12(cell, x):
    """eq. 12 transcribed with explicit column vectors, one example at a time."""
    n = cell.hidden_size
    w = torch.zeros(n, n, dtype=x.dtype)
    iu = torch.triu_indices(n, n, 1)
    w[iu[0], iu[1]] = cell.matrix.weight.detach()
    a = w - w.T - cell.matrix.gamma * torch.eye(n, dtype=x.dtype)
    v, b = cell.weight_ih.detach(), cell.bias.detach()
    out = []
    for example in x:
        h = torch.zeros(n, dtype=x.dtype)
        for x_t in example:
            h = h + cell.eps * torch.tanh(a @ h + v @ x_t + b)
        out.append(h)
    return torch.stack(out), a


def _direct_eq13(cell, x, a):
    n = cell.hidden_size
    v_h, v_z = cell.weight_ih.detach()[:n], cell.weight_ih.detach()[n:]
    b_h, b_z = cell.bias.detach()[:n], cell.bias.detach()[n:]
    out = []
    for example in x:
        h = torch.zeros(n, dtype=x.dtype)
        for x_t in example:
            z = torch.sigmoid(a @ h + v_z @ x_t + b_z)
            h = h + cell.eps * z * torch.tanh(a @ h + v_h @ x_t + b_h)
        out.append(h)
    return torch.stack(out)


def _randomize(cell):
    with torch.no_grad():
        for p in cell.parameters():
            p.normal_(0, 0.5)


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_eq12_matches_direct_transcription(backend):
    torch.manual_seed(0)
    cell = AntisymmetricRNNCell(3, 5, eps=0.3, gamma=0.05, backend=backend).double()
    _randomize(cell)
    x = torch.randn(4, 6, 3, dtype=torch.float64)
    expected, _ = _direct_eq12(cell, x)
    torch.testing.assert_close(cell(x)[-1], expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_eq13_matches_direct_transcription(backend):
    torch.manual_seed(1)
    cell = GatedAntisymmetricRNNCell(3, 5, eps=0.3, gamma=0.05, backend=backend).double()
    _randomize(cell)
    x = torch.randn(4, 6, 3, dtype=torch.float64)
    a = cell.recurrent_matrix().detach()
    torch.testing.assert_close(cell(x)[-1], _direct_eq13(cell, x, a), rtol=1e-12, atol=1e-12)


def test_ablation_uses_its_unstructured_matrix():
    torch.manual_seed(2)
    cell = AblationCell(3, 5, eps=0.3).double()
    _randomize(cell)
    x = torch.randn(4, 6, 3, dtype=torch.float64)
    m = cell.weight_hh.detach()
    assert not torch.allclose(m, -m.T)  # nothing forces structure on it
    torch.testing.assert_close(cell(x)[-1], _direct_eq13(cell, x, m), rtol=1e-12, atol=1e-12)


def test_step_states_equal_sequence_states():
    torch.manual_seed(3)
    for cell in (GatedAntisymmetricRNNCell(2, 6, backend="torch"), LSTMCell(2, 6)):
        x = torch.randn(3, 5, 2)
        torch.testing.assert_close(torch.stack(cell.step_states(x)), cell(x))


def test_antisymmetric_matrix_structure():
    torch.manual_seed(4)
    n = 9
    mat = AntisymmetricMatrix(n, gamma=0.0, sigma_w=3.0).double()
    assert mat.weight.numel() == n * (n - 1) // 2
    w = mat.upper()
    assert torch.equal(w, torch.triu(w, diagonal=1))
    a = mat()
    assert torch.equal(a, -a.T)  # exactly antisymmetric
    assert torch.linalg.eigvals(a).real.abs().max() < 1e-12  # purely imaginary spectrum
    a_gamma = AntisymmetricMatrix(n, gamma=0.25, sigma_w=3.0).double()
    with torch.no_grad():
        a_gamma.weight.copy_(mat.weight)
    torch.testing.assert_close(a_gamma(), a - 0.25 * torch.eye(n, dtype=torch.float64))
    torch.testing.assert_close(
        torch.linalg.eigvals(a_gamma()).real, torch.full((n,), -0.25, dtype=torch.float64)
    )


def _var(t):
    return t.detach().double().var().item()


@pytest.mark.parametrize("sigma_w", [1.0, 4.0])
def test_initialisation_variances(sigma_w):
    torch.manual_seed(5)
    m, n = 64, 512
    for cell in (
        AntisymmetricRNNCell(m, n, sigma_w=sigma_w),
        GatedAntisymmetricRNNCell(m, n, sigma_w=sigma_w),
        AblationCell(m, n, sigma_w=sigma_w),
    ):
        assert _var(cell.weight_ih) == pytest.approx(1 / m, rel=0.03)
        hidden = cell.matrix.weight if hasattr(cell, "matrix") else cell.weight_hh
        assert _var(hidden) == pytest.approx(sigma_w**2 / n, rel=0.03)
        assert torch.count_nonzero(cell.bias) == 0
    lstm = LSTMCell(m, n, sigma_w=sigma_w).lstm
    assert _var(lstm.weight_ih_l0) == pytest.approx(1 / m, rel=0.03)
    assert _var(lstm.weight_hh_l0) == pytest.approx(sigma_w**2 / n, rel=0.03)


def test_sigma_w_zero_gives_zero_recurrent_weights():
    cell = AntisymmetricRNNCell(1, 16, sigma_w=0.0, gamma=0.0)
    assert torch.count_nonzero(cell.recurrent_matrix()) == 0


def test_lstm_forget_gate_bias_is_one():
    n = 7
    lstm = LSTMCell(3, n).lstm
    total = lstm.bias_ih_l0 + lstm.bias_hh_l0  # torch adds both bias vectors
    gates = total.detach().view(4, n)  # (input, forget, cell, output)
    assert torch.equal(gates[1], torch.ones(n))
    assert torch.count_nonzero(gates[[0, 2, 3]]) == 0


# (model, dataset, paper's parameter count in thousands)
PAPER_COUNTS = [
    ("arnn", "mnist", 10),
    ("gated_arnn", "mnist", 10),
    ("lstm", "mnist", 68),
    ("lstm", "cifar10", 69),
    ("arnn", "cifar10", 36),
    ("gated_arnn", "cifar10", 37),
    ("ablation", "cifar10", 42),
]


@pytest.mark.parametrize("model,dataset,thousands", PAPER_COUNTS)
def test_parameter_counts_match_the_paper(model, dataset, thousands):
    cfg = compose_cfg(f"model={model}", f"dataset={dataset}")
    cell = build_cell(
        model, cfg.dataset.input_size, cfg.model.hidden_size, backend="reference"
    )
    params = count_parameters(SequenceClassifier(cell, cfg.dataset.num_classes))
    assert round(params / 1000) == thousands, params


def test_paper_hidden_sizes_come_from_the_presets():
    sizes = {
        (m, d): compose_cfg(f"model={m}", f"dataset={d}").model.hidden_size
        for m in ("lstm", "arnn", "gated_arnn", "ablation")
        for d in ("mnist", "pmnist", "cifar10", "noise_cifar10")
    }
    assert {sizes[(m, d)] for m in ("lstm", "arnn", "gated_arnn", "ablation")
            for d in ("mnist", "pmnist")} == {128}
    for d in ("cifar10", "noise_cifar10"):
        assert (sizes[("lstm", d)], sizes[("arnn", d)], sizes[("gated_arnn", d)],
                sizes[("ablation", d)]) == (128, 256, 256, 196)
    assert compose_cfg("dataset=cifar10", "model.hidden_size=64").model.hidden_size == 64


def test_classifier_reads_the_last_state():
    """The logits depend on h_T only: an input change at the last step moves them, and the
    expectation is computed by hand from eq. 13 for T=1 (h_1 = eps z tanh(V_h x + b_h) from
    h_0 = 0, the A h_0 terms vanish) and the head's weights."""
    torch.manual_seed(6)
    cell = GatedAntisymmetricRNNCell(2, 8, eps=0.5, backend="reference")
    model = SequenceClassifier(cell, 10)
    with torch.no_grad():
        cell.bias.uniform_(-1, 1)
        model.head.bias.uniform_(-1, 1)
    x = torch.randn(3, 1, 2)
    v_h, v_z = cell.weight_ih[:8], cell.weight_ih[8:]
    b_h, b_z = cell.bias[:8], cell.bias[8:]
    h1 = 0.5 * torch.sigmoid(x[:, 0] @ v_z.T + b_z) * torch.tanh(x[:, 0] @ v_h.T + b_h)
    expected = h1 @ model.head.weight.T + model.head.bias
    torch.testing.assert_close(model(x), expected)
    # Longer sequences: the head reads the last of the step-by-step states.
    x = torch.randn(3, 6, 2)
    states = cell.step_states(x)
    torch.testing.assert_close(model(x), model.head(states[-1]))
    assert model(x).shape == (3, 10)
