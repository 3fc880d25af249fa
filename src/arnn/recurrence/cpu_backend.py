"""The `cpu` backend: the recurrence's time loop in compiled code (cpu_kernel.cpp, built by
cpu_build), forward and backward, each batch row's whole sequence on one thread.

The kernel reads raw pointers, so `cpu_recurrence` lets through only what it can read: CPU
tensors (a CUDA or meta tensor's pointer is no host memory), float32 or float64 with every
operand alike, and shapes that agree with each other; anything else is refused in one line
naming the operand. Under CPU autocast the recurrence computes in float32 (autocast's lower
precision would hand the kernel 16-bit buffers). Every buffer whose pointer the kernel reads is
held by a local name for the length of the call.

Threads: the batch rows are split between `torch.get_num_threads()` threads (train.threads),
torch's own OpenMP threads (the kernel is linked with -fopenmp, and the runtime torch loaded is
the one it finds), and a row is computed the same way whatever thread has it: the states, the
recurrent matrix's gradient (each of its rows summed by one thread, in one order) and dL/dh0 do
not depend on the thread count; the input weights' gradients are summed per thread.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from arnn.recurrence.cpu_build import kernel
from arnn.recurrence.torch_backend import matrix_gradient

DTYPES = (torch.float32, torch.float64)
FUSED_INPUTS = 8  # up to this many inputs per step, the kernel sums the input weights' grads


def _ptr(t: Tensor) -> int:
    return t.data_ptr()


def check_operands(x: Tensor, weight_ih: Tensor, bias: Tensor, matrix: Tensor, h0: Tensor,
                   gated: bool) -> None:
    """Refuse, in one line, operands the kernel cannot read: another device, another dtype,
    shapes that do not fit together."""
    operands = {"x": x, "weight_ih": weight_ih, "bias": bias, "matrix": matrix, "h0": h0}
    for name, t in operands.items():
        if t.device.type != "cpu":
            raise ValueError(f"the cpu backend computes on the CPU: {name} is on {t.device}; "
                             "use backend auto, torch or triton for tensors there")
    if not torch.is_autocast_enabled("cpu"):
        for name, t in operands.items():
            if t.dtype not in DTYPES or t.dtype != x.dtype:
                raise TypeError(f"the cpu backend computes in float32 or float64 with every "
                                f"operand alike: {name} is {t.dtype}, x {x.dtype}; use the "
                                "torch backend for other dtypes")
    if x.dim() != 3:
        raise ValueError(f"the cpu backend: x must be (B, T, m), not {tuple(x.shape)}")
    batch, _, m = x.shape
    n = matrix.shape[0] if matrix.dim() == 2 else -1
    kn = (2 if gated else 1) * n
    expected = {"weight_ih": (kn, m), "bias": (kn,), "matrix": (n, n), "h0": (batch, n)}
    for name, shape in expected.items():
        if tuple(operands[name].shape) != shape or n < 0:
            raise ValueError(f"the cpu backend: {name} is {tuple(operands[name].shape)}, not "
                             f"{shape} (x {tuple(x.shape)}, matrix {tuple(matrix.shape)}"
                             f"{', gated' if gated else ''})")


def cpu_recurrence(x: Tensor, weight_ih: Tensor, bias: Tensor, matrix: Tensor, h0: Tensor,
                   eps: float, gated: bool, last_only: bool) -> Tensor:
    """The `cpu` backend (the contract of arnn.recurrence.Backend)."""
    check_operands(x, weight_ih, bias, matrix, h0, gated)
    return CpuRecurrence.apply(x, weight_ih, bias, matrix, h0, eps, gated, last_only)


class CpuRecurrence(torch.autograd.Function):
    """states = f(x, weight_ih, bias, matrix, h0): x (B, T, m), weight_ih (k n, m) and bias
    (k n,) with k = 2 if gated, matrix (n, n), h0 (B, n); returns h_1..h_T as (T, B, n), or h_T
    alone (B, n) when `last_only` (then no gradient of the other states exists, nor is made).
    For up to FUSED_INPUTS inputs per step (float32) the kernel computes the input projection
    inside the loop and, in backward, sums the input weights' and biases' gradients as it goes:
    neither every step's projections nor their gradients are stored. With more inputs, the
    projection of all steps is one matrix product before the loop, its gradient one after."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu", cast_inputs=torch.float32)
    def forward(ctx, x: Tensor, weight_ih: Tensor, bias: Tensor, matrix: Tensor, h0: Tensor,
                eps: float, gated: bool, last_only: bool = False):
        batch, steps, m = x.shape
        n = matrix.shape[0]
        x_tm = x.detach().transpose(0, 1).reshape(steps * batch, m).contiguous()
        states = x.new_empty(steps + 1, batch, n)
        states[0] = h0
        acts = x.new_empty(steps, batch, (2 if gated else 1) * n)
        matrix_t = matrix.detach().t().contiguous()
        threads = torch.get_num_threads()
        if x.dtype == torch.float32 and m <= FUSED_INPUTS:  # the projection inside the loop
            weight_t, bias_ = weight_ih.detach().t().contiguous(), bias.detach().contiguous()
            kernel().arnn_forward_f32(steps, batch, n, int(gated), None, _ptr(x_tm),
                                      _ptr(weight_t), _ptr(bias_), m, _ptr(matrix_t), eps,
                                      _ptr(states), _ptr(acts), threads)
        else:
            x_proj = torch.addmm(bias.detach(), x_tm, weight_ih.detach().t())
            args = (_ptr(matrix_t), eps, _ptr(states), _ptr(acts), threads)
            if x.dtype == torch.float32:
                kernel().arnn_forward_f32(steps, batch, n, int(gated), _ptr(x_proj), None, None,
                                          None, m, *args)
            else:
                kernel().arnn_forward_f64(steps, batch, n, int(gated), _ptr(x_proj), *args)
        ctx.save_for_backward(x_tm, weight_ih, matrix, states, acts)
        ctx.eps, ctx.gated, ctx.last_only = eps, gated, last_only
        return states[steps] if last_only else states[1:]

    @staticmethod
    @once_differentiable
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad: Tensor):
        x_tm, weight_ih, matrix, states, acts = ctx.saved_tensors
        steps, batch, kn = acts.shape
        n, m, threads = matrix.shape[0], x_tm.shape[1], torch.get_num_threads()
        da = acts.new_empty(steps, batch, n)
        if ctx.last_only:  # dL/dh_T comes in through dh; no other state has a gradient
            dh, grad_states = grad.to(acts.dtype).contiguous().clone(), None
        else:
            dh, grad_states = acts.new_zeros(batch, n), grad.to(acts.dtype).contiguous()
        fuse = acts.dtype == torch.float32 and m <= FUSED_INPUTS and not ctx.needs_input_grad[0]
        grad_pre = None if fuse else acts.new_empty(steps, batch, kn)
        dwb = acts.new_zeros(threads, m + 1, kn, dtype=torch.float64) if fuse else None
        matrix_c = matrix.detach().to(acts.dtype).contiguous()  # held: the kernel reads it
        lib, gs = kernel(), None if grad_states is None else _ptr(grad_states)
        common = (steps, batch, n, int(ctx.gated), gs, _ptr(acts), _ptr(matrix_c), ctx.eps)
        if acts.dtype == torch.float32:
            lib.arnn_backward_f32(*common, None if fuse else _ptr(grad_pre), _ptr(da), _ptr(dh),
                                  _ptr(x_tm), m, _ptr(dwb) if fuse else None, threads)
        else:
            lib.arnn_backward_f64(*common, _ptr(grad_pre), _ptr(da), _ptr(dh), threads)
        if fuse:
            sums = dwb.sum(dim=0).float()
            grad_w, grad_b, grad_x = sums[:m].t().contiguous(), sums[m], None
        else:
            flat = grad_pre.view(steps * batch, kn)
            grad_w, grad_b = flat.t() @ x_tm, flat.sum(dim=0)
            grad_x = (flat @ weight_ih.to(acts.dtype)).view(steps, batch, m).transpose(0, 1)
        grad_matrix = None
        if ctx.needs_input_grad[3] and acts.dtype == torch.float32:
            total = torch.zeros(n, n, dtype=torch.float64)
            lib.arnn_matrix_gradient_f32(steps * batch, n, _ptr(da), _ptr(states), _ptr(total),
                                         threads)
            grad_matrix = total.float()
        elif ctx.needs_input_grad[3]:
            grad_matrix = matrix_gradient(da, states)
        return (grad_x, grad_w if ctx.needs_input_grad[1] else None,
                grad_b if ctx.needs_input_grad[2] else None, grad_matrix,
                dh if ctx.needs_input_grad[4] else None, None, None, None)


def pointwise(name: str, x: Tensor) -> Tensor:
    """The kernel's float32 tanh or sigmoid of `x` (for measuring their error)."""
    x = x.detach().float().contiguous()
    out = torch.empty_like(x)
    getattr(kernel(), f"arnn_{name}_f32")(_ptr(x), _ptr(out), x.numel())
    return out
