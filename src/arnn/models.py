"""The paper's four models: recurrent cells plus a shared sequence classifier.

Each cell owns its parameters and maps a batch of sequences (B, T, m) to its hidden states
(T, B, n); the antisymmetric cells do it through `arnn.recurrence.recurrence`. `step_states`
runs the same computation one step at a time and returns each h_t as a graph node, so that
gradients dL/dh_t can be read (gradient-flow figures). `SequenceClassifier` puts a linear head on
h_T. Initialisation follows Appendix C: input-to-hidden ~ N(0, 1/m), hidden-to-hidden
~ N(0, sigma_w^2 / n) (variances), biases 0 except the LSTM forget gate (1).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from arnn.errors import invalid
from arnn.recurrence import BACKENDS, backend_function, reference_steps


class AntisymmetricMatrix(nn.Module):
    """A = W - W^T - gamma I, W strictly upper triangular: n(n-1)/2 free parameters."""

    def __init__(self, n: int, gamma: float, sigma_w: float) -> None:
        super().__init__()
        self.n, self.gamma, self.sigma_w = n, gamma, sigma_w
        self.weight = nn.Parameter(torch.empty(n * (n - 1) // 2))
        self.register_buffer("index", torch.triu_indices(n, n, offset=1), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, std=self.sigma_w / math.sqrt(self.n))

    def upper(self) -> Tensor:
        """W as an (n, n) strictly upper-triangular matrix."""
        w = self.weight.new_zeros(self.n, self.n)
        return w.index_put((self.index[0], self.index[1]), self.weight)

    def forward(self) -> Tensor:
        w = self.upper()
        eye = torch.eye(self.n, dtype=w.dtype, device=w.device)
        return w - w.t() - self.gamma * eye


class RecurrentCell(nn.Module):
    """Common interface: `forward(x) -> (T, B, n)`, `step_states(x) -> [h_1..h_T]`,
    `recurrent_matrix() -> (n, n) | None`."""

    hidden_size: int
    # The model settings (conf/model, conf/preset) that define this cell, besides hidden_size:
    # its constructor takes them, and they are part of a run's identity (arnn.identity).
    settings: tuple[str, ...] = ()
    # Whether model.backend chooses how the cell computes (the same function either way, so it
    # is not part of a run's identity).
    takes_backend: bool = False

    def recurrent_matrix(self) -> Tensor | None:
        return None

    def last_state(self, x: Tensor) -> Tensor:
        """h_T (B, n), what the classifier reads."""
        return self(x)[-1]

    def step_states(self, x: Tensor) -> list[Tensor]:
        raise NotImplementedError


class _AntisymmetricFamily(RecurrentCell):
    """Shared body of eq. 12 / eq. 13 cells; subclasses set `gated` and the matrix."""

    gated: bool
    takes_backend = True

    def __init__(self, input_size: int, hidden_size: int, eps: float, backend: str) -> None:
        super().__init__()
        self.input_size, self.hidden_size, self.eps, self.backend = (
            input_size,
            hidden_size,
            eps,
            backend,
        )
        k = 2 if self.gated else 1
        # Rows [V_h; V_z] (gated) or V_h: input-to-hidden, N(0, 1/m).
        self.weight_ih = nn.Parameter(torch.empty(k * hidden_size, input_size))
        self.bias = nn.Parameter(torch.zeros(k * hidden_size))
        nn.init.normal_(self.weight_ih, std=1.0 / math.sqrt(input_size))

    def recurrent_matrix(self) -> Tensor:
        raise NotImplementedError

    def _states(self, x: Tensor, h0: Tensor | None, last_only: bool) -> Tensor:
        """The recurrence by this cell's backend: a resolved name is looked up in the table
        (models are built with one, arnn.build); `auto` is resolved for x's device."""
        function = BACKENDS.get(self.backend) or backend_function(self.backend, x.device)[1]
        h0 = x.new_zeros(x.shape[0], self.hidden_size) if h0 is None else h0
        return function(x, self.weight_ih, self.bias, self.recurrent_matrix(), h0, self.eps,
                        self.gated, last_only)

    def forward(self, x: Tensor, h0: Tensor | None = None) -> Tensor:
        return self._states(x, h0, last_only=False)

    def last_state(self, x: Tensor) -> Tensor:
        return self._states(x, None, last_only=True)

    def step_states(self, x: Tensor) -> list[Tensor]:
        h0 = x.new_zeros(x.shape[0], self.hidden_size)
        return reference_steps(x, self.weight_ih, self.bias, self.recurrent_matrix(), self.eps,
                               self.gated, h0)


class AntisymmetricRNNCell(_AntisymmetricFamily):
    """eq. 12: h_t = h_{t-1} + eps tanh(A h_{t-1} + V_h x_t + b_h)."""

    gated = False
    settings = ("eps", "gamma", "sigma_w")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        eps: float = 0.01,
        gamma: float = 0.01,
        sigma_w: float = 1.0,
        backend: str = "auto",
    ) -> None:
        super().__init__(input_size, hidden_size, eps, backend)
        self.matrix = AntisymmetricMatrix(hidden_size, gamma, sigma_w)

    def recurrent_matrix(self) -> Tensor:
        return self.matrix()


class GatedAntisymmetricRNNCell(AntisymmetricRNNCell):
    """eq. 13: an input gate z_t = sigmoid(A h_{t-1} + V_z x_t + b_z) sharing A."""

    gated = True


class AblationCell(_AntisymmetricFamily):
    """eq. 13 with an unstructured n x n matrix M in place of A (Table 2's ablation)."""

    gated = True
    settings = ("eps", "sigma_w")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        eps: float = 0.01,
        sigma_w: float = 1.0,
        backend: str = "auto",
    ) -> None:
        super().__init__(input_size, hidden_size, eps, backend)
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size))
        nn.init.normal_(self.weight_hh, std=sigma_w / math.sqrt(hidden_size))

    def recurrent_matrix(self) -> Tensor:
        return self.weight_hh


class LSTMCell(RecurrentCell):
    """torch's LSTM (cuDNN on GPU) with Appendix C's initialisation and forget-gate bias 1."""

    settings = ("sigma_w",)

    def __init__(self, input_size: int, hidden_size: int, sigma_w: float = 1.0) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.lstm = nn.LSTM(input_size, hidden_size, batch_first=True)
        nn.init.normal_(self.lstm.weight_ih_l0, std=1.0 / math.sqrt(input_size))
        nn.init.normal_(self.lstm.weight_hh_l0, std=sigma_w / math.sqrt(hidden_size))
        nn.init.zeros_(self.lstm.bias_ih_l0)
        nn.init.zeros_(self.lstm.bias_hh_l0)
        # Gate order (input, forget, cell, output); torch adds both bias vectors, so the
        # forget gate's effective bias is bias_ih + bias_hh = 1 + 0.
        with torch.no_grad():
            self.lstm.bias_ih_l0[hidden_size : 2 * hidden_size] = 1.0

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.lstm(x)
        return out.transpose(0, 1)

    def step_states(self, x: Tensor) -> list[Tensor]:
        h = c = None
        states = []
        for t in range(x.shape[1]):
            # The next step starts from the h appended here, so dL/dh_t is its total gradient.
            _, (h_n, c) = self.lstm(x[:, t : t + 1], None if h is None else (h[None], c))
            h = h_n[0]
            states.append(h)
        return states


class SequenceClassifier(nn.Module):
    """Last hidden state -> linear -> class logits."""

    def __init__(self, cell: RecurrentCell, num_classes: int) -> None:
        super().__init__()
        self.cell = cell
        self.head = nn.Linear(cell.hidden_size, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.cell.last_state(x))


# The registry of models: conf/model/<name>.yaml selects the cell registered under <name>; the
# names allowed on the command line and in errors derive from it.
CELLS: dict[str, type[RecurrentCell]] = {
    "lstm": LSTMCell,
    "arnn": AntisymmetricRNNCell,
    "gated_arnn": GatedAntisymmetricRNNCell,
    "ablation": AblationCell,
}


def build_cell(name: str, input_size: int, hidden_size: int, **options: Any) -> RecurrentCell:
    """The cell registered under `name`, given the options it takes (`settings`, and `backend`
    where it `takes_backend`); the others are not settings of this model (config validation
    refuses values for them)."""
    if name not in CELLS:
        raise invalid("model", name, CELLS)
    cls = CELLS[name]
    taken = cls.settings + (("backend",) if cls.takes_backend else ())
    return cls(input_size, hidden_size, **{k: options[k] for k in taken if k in options})


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
