"""The recurrence as two persistent Triton kernels: the whole time loop runs inside the kernel.

One program owns BLOCK_B batch rows for all T steps (forward, then the reverse recursion in
backward); batch rows beyond B are masked, hidden sizes are padded to a power of two. Products
use exact fp32 (`input_precision="ieee"`, fp32 accumulation).

The recurrent matrix is either held on chip for the whole loop (HOLD=True: loaded once into
registers, used while n_pad^2 * 4 bytes fits, i.e. n <= 128), or streamed in BLOCK_K-row
slices from L2 every step (n up to 256 and beyond: an fp32 256x256 matrix is 256 KB, more than
the 228 KB of shared memory of an H100). In the streamed form the state chunk is read back
from the states output written the step before, behind a block barrier.

Outside the kernels (in torch): the input projection of all steps (one matmul, done by the
caller) and the gradient of the matrix, dA = sum_t da_t^T h_{t-1}, one large matmul.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.autograd.function import once_differentiable

from arnn.recurrence.torch_backend import matrix_gradient, project

# Launch parameters; `tuning` overrides them (scripts/bench.py --tune tries variants).
# block_b: batch rows per program (>= 16 uses tl.dot, fewer a reduction); hold: keep the matrix in
# registers (default: while n_pad <= 128); block_k: rows of the matrix per streamed slice.
tuning: dict[str, int | bool] = {}


@triton.jit
def _tanh(x):
    # tanh via exp of a non-positive argument: no overflow, exact at 0.
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x >= 0, t, -t)


@triton.jit
def _mm(h, m):
    """(rows, k) @ (k, n) in fp32: tl.dot needs >= 16 rows; fewer rows per program (more
    programs in flight) use a broadcast product and a reduction."""
    if h.shape[0] >= 16:
        return tl.dot(h, m, input_precision="ieee")
    return tl.sum(h[:, :, None] * m[None, :, :], axis=1)


@triton.jit
def _matvec(h, vec_ptr, mat_ptr, row_stride, col_stride, rows, cols, mask_b, n,
            N_PAD: tl.constexpr, BLOCK_K: tl.constexpr, HOLD: tl.constexpr, mat_full):
    """h @ M where M[k, j] = mat_ptr[k * row_stride + j * col_stride]. With HOLD, `mat_full`
    is M already in registers and `h` is used directly; otherwise h's columns are read back
    from vec_ptr (the copy of h the kernel stored last step) BLOCK_K at a time."""
    if HOLD:
        acc = _mm(h, mat_full)
    else:
        acc = tl.zeros((h.shape[0], N_PAD), dtype=tl.float32)
        ks = tl.arange(0, BLOCK_K)
        for k0 in tl.static_range(0, N_PAD, BLOCK_K):  # unrolled: slice loads issue together
            kk = k0 + ks
            hk = tl.load(vec_ptr + rows[:, None] * n + kk[None, :],
                         mask=mask_b[:, None] & (kk[None, :] < n), other=0.0)
            mk = tl.load(mat_ptr + kk[:, None] * row_stride + cols[None, :] * col_stride,
                         mask=(kk[:, None] < n) & (cols[None, :] < n), other=0.0)
            acc += _mm(hk, mk)
    return acc


@triton.jit
def _forward_kernel(x_ptr, a_ptr, states_ptr, acts_ptr, B, T, n, eps,
                    GATED: tl.constexpr, N_PAD: tl.constexpr, BLOCK_B: tl.constexpr,
                    BLOCK_K: tl.constexpr, HOLD: tl.constexpr):
    pid = tl.program_id(0)
    rows = pid * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = tl.arange(0, N_PAD)
    mask_b = rows < B
    mask = mask_b[:, None] & (cols[None, :] < n)
    offs = rows[:, None] * n + cols[None, :]
    K: tl.constexpr = 2 if GATED else 1
    # a = h @ A^T, i.e. M[k, j] = A[j, k].
    if HOLD:
        mat = tl.load(a_ptr + cols[:, None] + cols[None, :] * n,
                      mask=(cols[:, None] < n) & (cols[None, :] < n), other=0.0)
    else:
        mat = 0.0
    h = tl.load(states_ptr + offs, mask=mask, other=0.0)  # states[0] = h0
    xrow = x_ptr + rows[:, None] * (K * n) + cols[None, :]
    act = acts_ptr + rows[:, None] * (K * n) + cols[None, :]
    # Each step's inputs are loaded one step ahead, off the h -> h critical path.
    x_h = tl.load(xrow, mask=mask, other=0.0)
    x_z = tl.load(xrow + n, mask=mask, other=0.0) if GATED else x_h
    for t in range(T):
        a = _matvec(h, states_ptr + t * B * n, a_ptr, 1, n, rows, cols, mask_b, n,
                    N_PAD, BLOCK_K, HOLD, mat)
        more = mask & (t + 1 < T)
        next_h = tl.load(xrow + (t + 1) * B * K * n, mask=more, other=0.0)
        if GATED:
            next_z = tl.load(xrow + (t + 1) * B * K * n + n, mask=more, other=0.0)
        else:
            next_z = next_h
        c = _tanh(a + x_h)
        tl.store(act + t * B * K * n, c, mask=mask)
        if GATED:
            z = tl.sigmoid(a + x_z)
            tl.store(act + t * B * K * n + n, z, mask=mask)
            h = h + eps * z * c
        else:
            h = h + eps * c
        tl.store(states_ptr + (t + 1) * B * n + offs, h, mask=mask)
        x_h, x_z = next_h, next_z
        if not HOLD:
            tl.debug_barrier()  # h_t is read back by other threads next step


@triton.jit
def _backward_kernel(grad_ptr, a_ptr, acts_ptr, gpre_ptr, da_ptr, dh0_ptr, B, T, n, eps,
                     GATED: tl.constexpr, N_PAD: tl.constexpr, BLOCK_B: tl.constexpr,
                     BLOCK_K: tl.constexpr, HOLD: tl.constexpr):
    pid = tl.program_id(0)
    rows = pid * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = tl.arange(0, N_PAD)
    mask_b = rows < B
    mask = mask_b[:, None] & (cols[None, :] < n)
    offs = rows[:, None] * n + cols[None, :]
    K: tl.constexpr = 2 if GATED else 1
    # dh_{t-1} += da_t @ A, i.e. M[k, j] = A[k, j].
    if HOLD:
        mat = tl.load(a_ptr + cols[:, None] * n + cols[None, :],
                      mask=(cols[:, None] < n) & (cols[None, :] < n), other=0.0)
    else:
        mat = 0.0
    dh = tl.zeros((BLOCK_B, N_PAD), dtype=tl.float32)
    act = acts_ptr + rows[:, None] * (K * n) + cols[None, :]
    gpre = gpre_ptr + rows[:, None] * (K * n) + cols[None, :]
    # Loaded one step ahead, as in the forward kernel.
    t = T - 1
    g_t = tl.load(grad_ptr + t * B * n + offs, mask=mask, other=0.0)
    c = tl.load(act + t * B * K * n, mask=mask, other=0.0)
    z = tl.load(act + t * B * K * n + n, mask=mask, other=0.0) if GATED else c
    for i in range(T):
        t = T - 1 - i
        more = mask & (t > 0)
        next_g = tl.load(grad_ptr + (t - 1) * B * n + offs, mask=more, other=0.0)
        next_c = tl.load(act + (t - 1) * B * K * n, mask=more, other=0.0)
        if GATED:
            next_z = tl.load(act + (t - 1) * B * K * n + n, mask=more, other=0.0)
        else:
            next_z = next_c
        dh += g_t
        if GATED:
            dpc = dh * eps * z * (1.0 - c * c)
            dpz = dh * eps * c * z * (1.0 - z)
            tl.store(gpre + t * B * K * n, dpc, mask=mask)
            tl.store(gpre + t * B * K * n + n, dpz, mask=mask)
            da = dpc + dpz
        else:
            da = dh * eps * (1.0 - c * c)
            tl.store(gpre + t * B * K * n, da, mask=mask)
        tl.store(da_ptr + t * B * n + offs, da, mask=mask)
        if not HOLD:
            tl.debug_barrier()
        dh += _matvec(da, da_ptr + t * B * n, a_ptr, n, 1, rows, cols, mask_b, n,
                      N_PAD, BLOCK_K, HOLD, mat)
        g_t, c, z = next_g, next_c, next_z
    tl.store(dh0_ptr + offs, dh, mask=mask)


def _launch_config(n: int) -> dict[str, int | bool]:
    """Defaults from `bench.py --tune` on an H200 (docs/tune_h200.json): one batch row per
    program (B programs in flight instead of B/16) beat tl.dot tiles by 3-6x."""
    n_pad = max(16, triton.next_power_of_2(n))
    hold = n_pad <= 128
    config: dict[str, int | bool] = {
        "N_PAD": n_pad,
        "BLOCK_B": 1,
        "BLOCK_K": min(32, n_pad),
        "HOLD": hold,
        "num_warps": 8 if hold else 4,
    }
    config.update({k.upper() if k != "num_warps" else k: v for k, v in tuning.items()})
    return config


class TritonRecurrence(torch.autograd.Function):
    """Same contract as TorchRecurrence: x_proj (T, B, k*n), matrix (n, n), h0 (B, n) ->
    states (T, B, n). float32 only."""

    @staticmethod
    def forward(ctx, x_proj: Tensor, matrix: Tensor, h0: Tensor, eps: float, gated: bool):
        if x_proj.dtype != torch.float32:
            raise TypeError(f"the triton backend computes in float32, got {x_proj.dtype}")
        steps, batch, kn = x_proj.shape
        n = matrix.shape[0]
        x_proj, matrix = x_proj.contiguous(), matrix.contiguous()
        states = x_proj.new_empty(steps + 1, batch, n)
        states[0] = h0
        acts = x_proj.new_empty(steps, batch, kn)
        config = _launch_config(n)
        grid = (triton.cdiv(batch, config["BLOCK_B"]),)
        _forward_kernel[grid](
            x_proj, matrix, states, acts, batch, steps, n, eps, GATED=gated, **config
        )
        ctx.save_for_backward(matrix, states, acts)
        ctx.eps, ctx.gated = eps, gated
        return states[1:]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_states: Tensor):
        matrix, states, acts = ctx.saved_tensors
        steps, batch, kn = acts.shape
        n = matrix.shape[0]
        grad_states = grad_states.contiguous()
        grad_pre = torch.empty_like(acts)
        da = states.new_empty(steps, batch, n)
        dh0 = states.new_empty(batch, n)
        config = _launch_config(n)
        grid = (triton.cdiv(batch, config["BLOCK_B"]),)
        _backward_kernel[grid](
            grad_states, matrix, acts, grad_pre, da, dh0, batch, steps, n, ctx.eps,
            GATED=ctx.gated, **config
        )
        return grad_pre, matrix_gradient(da, states), dh0, None, None


def triton_recurrence(x: Tensor, weight_ih: Tensor, bias: Tensor, matrix: Tensor, h0: Tensor,
                      eps: float, gated: bool, last_only: bool) -> Tensor:
    """The `triton` backend (the contract of arnn.recurrence.Backend)."""
    states = TritonRecurrence.apply(project(x, weight_ih, bias), matrix, h0, eps, gated)
    return states[-1] if last_only else states
