"""The recurrences written out step by step with autograd: the definition and the test oracle.

eq. 12:  h_t = h_{t-1} + eps * tanh(A h_{t-1} + V_h x_t + b_h)
eq. 13:  z_t = sigmoid(A h_{t-1} + V_z x_t + b_z)
         h_t = h_{t-1} + eps * z_t * tanh(A h_{t-1} + V_h x_t + b_h)

Batches are rows, so `A h` is written `h @ A.T`. For the gated form `weight_ih` stacks
[V_h; V_z] and `bias` stacks [b_h; b_z].
"""

from __future__ import annotations

import torch
from torch import Tensor


def reference_steps(
    x: Tensor, weight_ih: Tensor, bias: Tensor, matrix: Tensor, eps: float, gated: bool, h0: Tensor
) -> list[Tensor]:
    """x: (B, T, m). Returns the T hidden states h_1..h_T, each (B, n), as graph nodes, so that
    `torch.autograd.grad(loss, states)` gives the total derivative dL/dh_t."""
    states = []
    h = h0
    for t in range(x.shape[1]):
        pre_x = x[:, t] @ weight_ih.T + bias
        a = h @ matrix.T
        if gated:
            pre_h, pre_z = pre_x.chunk(2, dim=-1)
            h = h + eps * torch.sigmoid(a + pre_z) * torch.tanh(a + pre_h)
        else:
            h = h + eps * torch.tanh(a + pre_x)
        states.append(h)
    return states


def reference(x: Tensor, weight_ih: Tensor, bias: Tensor, matrix: Tensor, h0: Tensor, eps: float,
              gated: bool, last_only: bool) -> Tensor:
    """The `reference` backend: `reference_steps` stacked (T, B, n), or its last state."""
    states = reference_steps(x, weight_ih, bias, matrix, eps, gated, h0)
    return states[-1] if last_only else torch.stack(states)
