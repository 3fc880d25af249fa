"""The Euler stability report (paper, section 3): rho = max |1 + eps mu(A)| and rho^T."""

import math

import pytest
import torch

from arnn.models import AblationCell, AntisymmetricRNNCell, GatedAntisymmetricRNNCell, LSTMCell
from arnn.stability import GROWTH_WARNING, stability_report, stability_warning


def _two_by_two(eps, gamma, w):
    """A = [[-gamma, w], [-w, -gamma]]: eigenvalues -gamma +- i w."""
    cell = AntisymmetricRNNCell(1, 2, eps=eps, gamma=gamma)
    with torch.no_grad():
        cell.matrix.weight.fill_(w)
    return cell


def test_two_by_two_by_hand():
    # |1 + eps(-gamma + i w)|^2 = (1 - eps gamma)^2 + (eps w)^2 = 0.98^2 + 0.3^2 = 1.0504
    cell = _two_by_two(eps=0.1, gamma=0.2, w=3.0)
    torch.testing.assert_close(cell.matrix(), torch.tensor([[-0.2, 3.0], [-3.0, -0.2]]))
    report = stability_report(cell, seq_len=100)
    # (float32 parameters: 0.2 and 0.1 are not exact)
    assert report.euler_rho == pytest.approx(math.sqrt(1.0504), rel=1e-6)
    assert report.log10_growth == pytest.approx(50 * math.log10(1.0504), rel=1e-5)
    assert report.growth_text == f"{1.0504 ** 50:.3g}"  # 11.7
    # gamma large enough: contraction, rho < 1
    assert stability_report(_two_by_two(0.1, 1.0, 0.5), 10).euler_rho == pytest.approx(
        math.sqrt(0.9**2 + 0.05**2))


def test_the_ablation_uses_its_unstructured_matrix_and_the_lstm_has_no_report():
    cell = AblationCell(1, 2, eps=0.5)
    with torch.no_grad():
        cell.weight_hh.copy_(torch.tensor([[1.0, 0.0], [0.0, -3.0]]))  # eigenvalues 1, -3
    # |1 + 0.5 * 1| = 1.5, |1 - 1.5| = 0.5
    assert stability_report(cell, 10).euler_rho == pytest.approx(1.5)
    assert stability_report(LSTMCell(1, 4), 10) is None


def test_warning_for_the_digits_values_on_cifar_length_sequences():
    torch.manual_seed(0)
    cell = GatedAntisymmetricRNNCell(3, 256, eps=0.1, gamma=0.1, sigma_w=1.0)
    report = stability_report(cell, seq_len=1024)
    assert report.log10_growth > math.log10(GROWTH_WARNING)
    line = stability_warning(cell, report, gamma=0.1, sigma_w=1.0)
    assert "\n" not in line
    for part in ("eps=0.1", "gamma=0.1", "sigma_w=1", "hidden_size=256", "T=1024",
                 f"rho^T = {report.growth_text}"):
        assert part in line, part
    # The proposed fixes are grid points that do bring rho^T under the threshold.
    assert "model.gamma=1" in line and "model.eps=0.01" in line
    torch.manual_seed(0)
    fixed = GatedAntisymmetricRNNCell(3, 256, eps=0.1, gamma=1.0, sigma_w=1.0)
    assert stability_report(fixed, 1024).log10_growth < math.log10(GROWTH_WARNING)
    torch.manual_seed(0)
    fixed = GatedAntisymmetricRNNCell(3, 256, eps=0.01, gamma=0.1, sigma_w=1.0)
    assert stability_report(fixed, 1024).log10_growth < math.log10(GROWTH_WARNING)


def test_no_warning_for_the_presets_values():
    torch.manual_seed(0)
    cell = GatedAntisymmetricRNNCell(3, 256, eps=0.01, gamma=0.01, sigma_w=1.0)
    report = stability_report(cell, seq_len=1024)
    assert report.growth_text and report.log10_growth < 0.1  # rho^T ~ 1.1
    assert stability_warning(cell, report, gamma=0.01, sigma_w=1.0) is None


def test_a_matrix_that_is_not_finite_has_no_report():
    cell = AntisymmetricRNNCell(1, 3)
    with torch.no_grad():
        cell.matrix.weight.fill_(float("nan"))
    assert stability_report(cell, 10) is None


def test_a_gated_cell_reports_its_start_with_half_open_gates():
    """eq. 13 at the start (b_z = 0, h_0 = 0): z = 1/2, so a step is eps z A; the report gives
    rho^T for that step beside the bound (z = 1), which alone decides the warning."""
    torch.manual_seed(0)
    gated = GatedAntisymmetricRNNCell(1, 128, eps=0.1, gamma=0.01, sigma_w=1.0)
    report = stability_report(gated, seq_len=784)
    mu = torch.linalg.eigvals(gated.recurrent_matrix().detach().double())
    assert report.half_gate_rho == pytest.approx((1 + 0.05 * mu).abs().max().item(), rel=1e-9)
    assert report.half_gate_rho < report.euler_rho
    assert "at the start, z = 1/2: rho^T = " in report.line()
    assert stability_report(AntisymmetricRNNCell(1, 8), 10).half_gate_rho is None
    assert "z = 1/2" not in stability_report(AntisymmetricRNNCell(1, 8), 10).line()
