"""The paper's stability condition for forward Euler, as a report on a model's recurrent matrix.

Euler's step h_t = h_{t-1} + eps f(h_{t-1}) is stable only when every eigenvalue mu of the step's
Jacobian has |1 + eps mu| <= 1 (paper, section 3). With tanh' = 1 (its largest value) the Jacobian
of f is the recurrent matrix: A = W - W^T - gamma I for arnn / gated_arnn (the gate z <= 1 only
shrinks it), the unstructured M for the ablation. rho = max_i |1 + eps mu_i| bounds the growth per
step; rho^T, its power over the task's T steps, bounds how far a perturbation of h_0 or a gradient
can grow. gamma exists to bring rho under 1: for A, mu = -gamma + i lambda, so
|1 + eps mu|^2 = (1 - eps gamma)^2 + (eps lambda)^2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from arnn.grid import APPENDIX_C

# rho^T above this at the start of a run: warn (never refuse). Measured (docs/presets.md, "Stability
# report"): the presets start near 1.1; 332 trained (ablation, digits, eps 0.1); 820 exploded
# (gated_arnn, pixel MNIST, eps 0.1, gamma 0.1); 1.9e4 exploded (arnn, pixel CIFAR-10); 2.1e4
# reached a mean loss of 102 in 50 steps (the ablation with sigma_w 1, pixel CIFAR-10).
GROWTH_WARNING = 500.0


def eigenvalues(matrix: Tensor) -> Tensor | None:
    """The eigenvalues of a recurrent matrix (complex128), None when it is not finite."""
    matrix = matrix.detach().double().cpu()
    if not torch.isfinite(matrix).all():  # a diverged run; LAPACK refuses NaN
        return None
    return torch.linalg.eigvals(matrix)


def euler_rho(mu: Tensor, eps: float) -> float:
    """rho = max_i |1 + eps mu_i|."""
    return (1 + eps * mu).abs().max().item()


@dataclass
class StabilityReport:
    euler_rho: float  # max_i |1 + eps mu_i|
    seq_len: int  # T
    eigenvalues: Tensor | None = field(default=None, repr=False)  # mu_i, when known
    # A gated cell's rho with its gates at 1/2 (as they start: b_z = 0, h_0 = 0): the step it
    # takes then is eps z. euler_rho takes the gates fully open, z = 1: the bound.
    half_gate_rho: float | None = None

    @property
    def log10_growth(self) -> float:
        """log10(rho^T) = T log10(rho)."""
        return _log10_growth(self.euler_rho, self.seq_len)

    @property
    def growth_text(self) -> str:
        """rho^T, written as a power of ten when too large for a float."""
        return _power_text(self.log10_growth)

    def line(self) -> str:
        gate = "" if self.half_gate_rho is None else (
            f" with the gate open (z = 1); at the start, z = 1/2: rho^T = "
            f"{_power_text(_log10_growth(self.half_gate_rho, self.seq_len))}")
        return (f"stability: rho = max|1 + eps mu(A)| = {self.euler_rho:.6f}, "
                f"rho^T = {self.growth_text} over T={self.seq_len} steps{gate}")


def _log10_growth(rho: float, steps: int) -> float:
    return steps * math.log10(rho) if rho > 0 else -math.inf


def _power_text(log10: float) -> str:
    return f"{10 ** log10:.3g}" if log10 < 300 else f"10^{log10:.0f}"


def stability_report(cell: torch.nn.Module, seq_len: int) -> StabilityReport | None:
    """The report for a cell with a recurrent matrix and an Euler step (None for the LSTM, or
    a matrix that is not finite)."""
    matrix = cell.recurrent_matrix() if hasattr(cell, "recurrent_matrix") else None
    eps = getattr(cell, "eps", None)
    if matrix is None or eps is None:
        return None
    mu = eigenvalues(matrix)
    if mu is None:
        return None
    half = euler_rho(mu, eps / 2) if getattr(cell, "gated", False) else None
    return StabilityReport(euler_rho(mu, eps), seq_len, mu, half)


def nearest_fixes(mu: Tensor, eps: float, gamma: float | None, sigma_w: float, seq_len: int,
                  threshold: float = GROWTH_WARNING) -> list[str]:
    """Single changes on the Appendix C grid that bring rho^T under `threshold`, one per axis:
    the smallest larger gamma at this eps, the largest smaller eps, the largest smaller sigma_w
    (at initialisation the matrix scales with sigma_w). `gamma` None: the ablation (no gamma)."""
    limit = math.log10(threshold) / seq_len  # log10(rho) must stay under this

    def ok(values: Tensor, step: float) -> bool:
        return math.log10(max(euler_rho(values, step), 1e-300)) <= limit

    fixes = []
    if gamma is not None:
        for g in sorted(v for v in APPENDIX_C["gamma"] if v > gamma):
            if ok(mu + gamma - g, eps):  # A's eigenvalues shift with gamma: mu - (g - gamma)
                fixes.append(f"model.gamma={g:g}")
                break
    for e in sorted((v for v in APPENDIX_C["eps"] if v < eps), reverse=True):
        if ok(mu, e):
            fixes.append(f"model.eps={e:g}")
            break
    if sigma_w > 0:
        shift = 0.0 if gamma is None else gamma
        for s in sorted((v for v in APPENDIX_C["sigma_w"] if v < sigma_w), reverse=True):
            if ok((mu + shift) * (s / sigma_w) - shift, eps):
                fixes.append(f"model.sigma_w={s:g}")
                break
    return fixes


def stability_warning(cell: torch.nn.Module, report: StabilityReport, gamma: float | None,
                      sigma_w: float, threshold: float = GROWTH_WARNING) -> str | None:
    """One warning line when rho^T exceeds `threshold`, naming the settings and the nearest grid
    changes that bring it under; None otherwise."""
    if report.log10_growth <= math.log10(threshold):
        return None
    mu = report.eigenvalues if report.eigenvalues is not None else eigenvalues(
        cell.recurrent_matrix())
    fixes = nearest_fixes(mu, cell.eps, gamma, sigma_w, report.seq_len, threshold)
    settings = f"eps={cell.eps:g}"
    if gamma is not None:
        settings += f", gamma={gamma:g}"
    return (
        f"unstable Euler steps: {settings}, sigma_w={sigma_w:g}, hidden_size={cell.hidden_size}, "
        f"T={report.seq_len}: rho^T = {report.growth_text} > {threshold:g}; gradients and states "
        f"may explode. Nearest grid change that brings it under: "
        + (", or ".join(fixes) if fixes else "none on the Appendix C grid in one step")
    )


def recurrent_spectrum(cell: torch.nn.Module, seq_len: int) -> dict[str, float]:
    """TensorBoard scalars of a cell's recurrent matrix: the largest real part and modulus of
    its eigenvalues and, for a cell with an Euler step, rho and log10(rho^T). Empty for a cell
    without a matrix (the LSTM) or with one that is not finite."""
    matrix = cell.recurrent_matrix()
    mu = None if matrix is None else eigenvalues(matrix)
    if mu is None:
        return {}
    out = {"recurrent/max_real_eig": mu.real.max().item(),
           "recurrent/max_abs_eig": mu.abs().max().item()}
    eps = getattr(cell, "eps", None)
    if eps is not None:
        report = StabilityReport(euler_rho(mu, eps), seq_len)
        out["recurrent/euler_rho"] = report.euler_rho
        out["recurrent/log10_growth"] = report.log10_growth
    return out
