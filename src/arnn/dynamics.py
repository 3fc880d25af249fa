"""Pictures of the dynamics: the paper's Figure 1 and gradient flow dL/dh_t over time.

Both run on the package's own pieces: the residual systems of Figure 1 are eq. 12 with no
input (`arnn.recurrence.recurrence`), the vanilla ones torch's nn.RNN(tanh); gradient flow uses
the models' `step_states`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from arnn.models import SequenceClassifier
from arnn.recurrence import recurrence

FIGURE1_INITIAL_STATES = [(0.0, 0.5), (-0.5, -0.5), (0.5, -0.75)]
FIGURE1_STEPS = 50
FIGURE1_EPS = 0.1


@dataclass
class System2D:
    """A 2-D system without input: vanilla h_t = tanh(W h_{t-1}) or residual
    h_t = h_{t-1} + eps tanh(W h_{t-1})."""

    title: str
    matrix: Tensor
    residual: bool
    eps: float = FIGURE1_EPS

    def step(self, h: Tensor, steps: int) -> Tensor:
        """States h_1..h_steps for a batch of initial states h (B, 2): (steps, B, 2)."""
        w = self.matrix.to(h.dtype)
        x = h.new_zeros(h.shape[0], steps, 1)  # no input
        if self.residual:
            zero_v, zero_b = h.new_zeros(2, 1), h.new_zeros(2)
            return recurrence(x, zero_v, zero_b, w, self.eps, False, h, "reference")
        rnn = nn.RNN(1, 2, nonlinearity="tanh", bias=False, batch_first=True).to(h.dtype)
        with torch.no_grad():
            rnn.weight_ih_l0.zero_()
            rnn.weight_hh_l0.copy_(w)
            out, _ = rnn(x, h[None])
        return out.transpose(0, 1)

    def trajectory(self, h0: tuple[float, float], steps: int = FIGURE1_STEPS) -> np.ndarray:
        """(steps + 1, 2): the initial state and the states after it."""
        start = torch.tensor([h0], dtype=torch.float64)
        with torch.no_grad():
            states = self.step(start, steps)[:, 0]
        return torch.cat([start, states]).numpy()


def _orthogonal(seed: int) -> Tensor:
    q, r = torch.linalg.qr(torch.randn(2, 2, generator=torch.Generator().manual_seed(seed)))
    return q * torch.sign(torch.diagonal(r))


def figure1_systems() -> list[System2D]:
    """The eight panels of Figure 1: vanilla RNNs (top), residual RNNs with eps = 0.1 (bottom)."""
    gaussian = torch.randn(2, 2, generator=torch.Generator().manual_seed(0))
    return [
        System2D("vanilla, W ~ N(0, 1)", gaussian, residual=False),
        System2D("vanilla, W = I", torch.eye(2), residual=False),
        System2D("vanilla, W orthogonal (seed 1)", _orthogonal(1), residual=False),
        System2D("vanilla, W orthogonal (seed 2)", _orthogonal(2), residual=False),
        System2D("residual, W+ (Re λ > 0)", torch.tensor([[2.0, -2.0], [0.0, 2.0]]), True),
        System2D("residual, W- (Re λ < 0)", torch.tensor([[-2.0, 2.0], [0.0, -2.0]]), True),
        System2D("residual, W0 antisymmetric", torch.tensor([[0.0, -2.0], [2.0, 0.0]]), True),
        System2D("residual, Wdiff = W0 - 0.15 I",
                 torch.tensor([[-0.15, -2.0], [2.0, -0.15]]), True),
    ]


def plot_figure1(out: Path) -> list[Path]:
    """Draw Figure 1 to `out` (PNG) and the same figure as PDF beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(16, 8.4))
    grid = np.linspace(-1.5, 1.5, 21)
    gx, gy = np.meshgrid(grid, grid)
    points = torch.tensor(np.stack([gx.ravel(), gy.ravel()], axis=1))
    for ax, system in zip(axes.ravel(), figure1_systems(), strict=True):
        with torch.no_grad():
            flow = (system.step(points, 1)[0] - points).numpy()  # one step's displacement
        ax.quiver(gx, gy, flow[:, 0].reshape(gx.shape), flow[:, 1].reshape(gx.shape),
                  color="0.7", angles="xy")
        for i, h0 in enumerate(FIGURE1_INITIAL_STATES):
            path = system.trajectory(h0)
            ax.plot(path[:, 0], path[:, 1], "-o", ms=2.5, lw=1.2, color=f"C{i}",
                    label=f"h0 = {h0}")
            ax.plot(*path[0], "s", color=f"C{i}", ms=6)
        ax.set_title(system.title, fontsize=10)
        ax.set_xlim(-1.6, 1.6)
        ax.set_ylim(-1.6, 1.6)
        ax.set_aspect("equal")
    axes[0, 0].legend(fontsize=7, loc="lower left")
    fig.suptitle("Figure 1: 2-D systems, 50 steps from three initial states (squares)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    pdf = out.with_suffix(".pdf")
    fig.savefig(out, dpi=110)
    fig.savefig(pdf)
    plt.close(fig)
    return [out, pdf]


def gradient_flow(model: SequenceClassifier, x: Tensor, y: Tensor,
                  states: list[Tensor] | None = None) -> np.ndarray:
    """Mean over the batch of ||dL/dh_t||, t = 1..T, for the cross-entropy of each example
    (summed, so one example's gradient does not depend on the batch size). `states`: the cell's
    `step_states(x)`, where the caller has run it already (with gradients)."""
    states = model.cell.step_states(x) if states is None else states
    loss = F.cross_entropy(model.head(states[-1]), y, reduction="sum")
    grads = torch.autograd.grad(loss, states)
    return torch.stack([g.norm(dim=1).mean() for g in grads]).detach().cpu().numpy()


def starting_states(states: list[Tensor]) -> list[Tensor]:
    """h_0 .. h_{T-1}, the state each step starts from, out of `step_states`' h_1 .. h_T."""
    return [torch.zeros_like(states[0]), *(h.detach() for h in states[:-1])]


@torch.no_grad()
def gate_trace(cell: nn.Module, x: Tensor, starts: list[Tensor] | None = None
               ) -> np.ndarray | None:
    """For a gated cell (eq. 13), its input gates z_t = sigmoid(A h_{t-1} + V_z x_t + b_z) on
    the batch x, t = 1..T: (T, B * n) values; None for a cell without a gate. `starts`: the
    `starting_states` where the caller has them (the recurrence is then not run again)."""
    if not getattr(cell, "gated", False):
        return None
    starts = starting_states(cell.step_states(x)) if starts is None else starts
    n, matrix = cell.hidden_size, cell.recurrent_matrix()
    weight_z, bias_z = cell.weight_ih[n:], cell.bias[n:]
    gates = [torch.sigmoid(h @ matrix.T + x[:, t] @ weight_z.T + bias_z)
             for t, h in enumerate(starts)]
    return torch.stack(gates).flatten(1).cpu().numpy()


# |a| above which tanh'(a) = 1 - tanh(a)^2 < 0.071: a step's gradient through that unit nearly stops
SATURATED = 2.0


@torch.no_grad()
def saturation(cell: nn.Module, x: Tensor, level: float = SATURATED,
               starts: list[Tensor] | None = None) -> np.ndarray | None:
    """For an antisymmetric-family cell (eq. 12, eq. 13, the ablation), the fraction of the
    candidate's pre-activations a_t = A h_{t-1} + V_h x_t + b_h on the batch x with |a_t| > level,
    t = 1..T: (T,) values; None for a cell without them (the LSTM). `starts` as for gate_trace."""
    if not hasattr(cell, "gated"):
        return None
    starts = starting_states(cell.step_states(x)) if starts is None else starts
    n, matrix = cell.hidden_size, cell.recurrent_matrix()
    weight_h, bias_h = cell.weight_ih[:n], cell.bias[:n]
    return np.array([((h @ matrix.T + x[:, t] @ weight_h.T + bias_h).abs() > level)
                     .double().mean().item() for t, h in enumerate(starts)])


def plot_gradient_flow(curves: dict[str, np.ndarray], title: str):
    """A matplotlib figure of ||dL/dh_t|| against t (log scale) for each named curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, norms in curves.items():
        ax.semilogy(np.arange(1, len(norms) + 1), np.maximum(norms, 1e-45), label=name)
    ax.set_xlabel("step t")
    ax.set_ylabel("mean ||dL/dh_t||")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_eigenvalues(spectra: dict[str, np.ndarray], title: str, gamma: float | None = None):
    """A matplotlib figure of each named matrix's eigenvalues in the complex plane; `gamma`
    marks Re = -gamma, where the antisymmetric models' eigenvalues lie."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for i, (name, mu) in enumerate(spectra.items()):
        ax.scatter(mu.real, mu.imag, s=10, alpha=0.7, color=f"C{i}",
                   label=f"{name}: max Re = {mu.real.max():.4g}")
    if gamma is not None:
        ax.axvline(-gamma, color="gray", linestyle="--", lw=0.8, label=f"Re = -gamma = {-gamma:g}")
    ax.axvline(0, color="black", lw=0.5)
    ax.set_xlabel("Re(mu)")
    ax.set_ylabel("Im(mu)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
