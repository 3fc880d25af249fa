"""Fused recurrence in plain PyTorch: a tight forward loop and a hand-written backward.

The input projections of all steps are one matrix product (done by the caller); the loop only
does the recurrent product and the pointwise update. Backward runs the reverse recursion over
the stored states and activations, and forms the gradient of the recurrent matrix as a single
(n x T*B) @ (T*B x n) product after the loop: no per-step autograd graph.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable


def matrix_gradient(grad_pre_activation: Tensor, states: Tensor) -> Tensor:
    """dL/dA = sum_t da_t^T h_{t-1} as one (n x T*B) @ (T*B x n) product; grad_pre_activation:
    (T, B, n) = dL/d(A h_{t-1}), states: (T+1, B, n) with h_0 first."""
    n = states.shape[-1]
    return grad_pre_activation.reshape(-1, n).t() @ states[:-1].reshape(-1, n)


class TorchRecurrence(torch.autograd.Function):
    """states = f(x_proj, matrix, h0); x_proj: (T, B, k*n) with k = 2 if gated else 1,
    matrix: (n, n), h0: (B, n). Returns states h_1..h_T as (T, B, n)."""

    @staticmethod
    def forward(ctx, x_proj: Tensor, matrix: Tensor, h0: Tensor, eps: float, gated: bool):
        steps, batch, _ = x_proj.shape
        n = matrix.shape[0]
        k = 2 if gated else 1
        states = x_proj.new_empty(steps + 1, batch, n)  # states[0] = h0
        states[0] = h0
        # tanh (and sigmoid) outputs, kept for the backward pass.
        acts = x_proj.new_empty(steps, batch, k, n)
        matrix_t = matrix.t()
        for t in range(steps):
            a = torch.mm(states[t], matrix_t)
            act = acts[t]
            torch.add(x_proj[t].view(batch, k, n), a.unsqueeze(1), out=act)
            if gated:
                act[:, 0].tanh_()
                act[:, 1].sigmoid_()
                torch.addcmul(states[t], act[:, 0], act[:, 1], value=eps, out=states[t + 1])
            else:
                act.tanh_()
                torch.add(states[t], act[:, 0], alpha=eps, out=states[t + 1])
        ctx.save_for_backward(matrix, states, acts)
        ctx.eps, ctx.gated = eps, gated
        return states[1:]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_states: Tensor):
        matrix, states, acts = ctx.saved_tensors
        eps, gated = ctx.eps, ctx.gated
        steps, batch, k, n = acts.shape
        grad_pre = acts.new_empty(steps, batch, k, n)  # dL/d(pre-activation), per step
        dh = torch.zeros_like(states[0])
        for t in range(steps - 1, -1, -1):
            dh = dh + grad_states[t]
            g = grad_pre[t]
            if gated:
                c, z = acts[t, :, 0], acts[t, :, 1]
                dc = dh * z  # eps applied once below
                torch.mul(dc, 1 - c * c, out=g[:, 0])
                torch.mul(dh * c, z * (1 - z), out=g[:, 1])
                g.mul_(eps)
                da = g.sum(dim=1)
            else:
                c = acts[t, :, 0]
                torch.mul(dh, 1 - c * c, out=g[:, 0])
                g.mul_(eps)
                da = g[:, 0]
            # h_t = h_{t-1} + ...: identity path plus the path through A h_{t-1}.
            dh = torch.addmm(dh, da, matrix)
        grad_x = grad_matrix = grad_h0 = None
        if ctx.needs_input_grad[0]:
            grad_x = grad_pre.view(steps, batch, k * n)
        if ctx.needs_input_grad[1]:
            grad_matrix = matrix_gradient(grad_pre.sum(dim=2) if gated else grad_pre[:, :, 0],
                                          states)
        if ctx.needs_input_grad[2]:
            grad_h0 = dh
        return grad_x, grad_matrix, grad_h0, None, None


def project(x: Tensor, weight_ih: Tensor, bias: Tensor) -> Tensor:
    """The input projection of every step as one matrix product, time-major: (T, B, k*n)."""
    batch, steps, m = x.shape
    x_proj = torch.addmm(bias, x.transpose(0, 1).reshape(steps * batch, m), weight_ih.t())
    return x_proj.view(steps, batch, -1)


def torch_recurrence(x: Tensor, weight_ih: Tensor, bias: Tensor, matrix: Tensor, h0: Tensor,
                     eps: float, gated: bool, last_only: bool) -> Tensor:
    """The `torch` backend (the contract of arnn.recurrence.Backend)."""
    states = TorchRecurrence.apply(project(x, weight_ih, bias), matrix, h0, eps, gated)
    return states[-1] if last_only else states
