"""The antisymmetric recurrence: one function, several backends chosen at run time.

`recurrence` computes all hidden states of eq. 12 (``gated=False``) or eq. 13 (``gated=True``)
for a given recurrent matrix. The three recurrent models differ only in that flag and in how
they form the matrix (antisymmetric minus diffusion, or unstructured for the ablation).

Backends (identical results up to float rounding):
- ``reference``: per-step autograd loop, the definition and the test oracle;
- ``torch``: hoisted input projection, tight loop, hand-written backward (CPU and CUDA);
- ``cpu``: the time loop in compiled code, fused pointwise work, rows split between threads
  (cpu_backend; compiled on first use, the torch backend standing in without a compiler);
- ``triton``: the time loop inside one GPU kernel per direction (CUDA).
``auto`` picks triton on CUDA when available, cpu on the CPU.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from arnn.recurrence import cpu_backend
from arnn.recurrence.reference import reference_steps
from arnn.recurrence.torch_backend import TorchRecurrence

__all__ = ["recurrence", "reference_steps", "resolve_backend", "triton_available", "BACKENDS"]

BACKENDS = ("reference", "torch", "cpu", "triton")


def triton_available(device: str | torch.device) -> bool:
    """True when the triton backend can run on `device` (a CUDA GPU, or the interpreter)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    if os.environ.get("TRITON_INTERPRET") == "1":
        return True
    return torch.device(device).type == "cuda" and torch.cuda.is_available()


def resolve_backend(backend: str, device: str | torch.device) -> str:
    """The backend that computes: `auto` is triton on a GPU, cpu on the CPU; cpu without a
    compiler is torch (said once)."""
    on_gpu = torch.device(device).type == "cuda"
    if backend == "auto":
        backend = ("triton" if triton_available(device) else "torch") if on_gpu else "cpu"
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is invalid: allowed: auto, {', '.join(BACKENDS)}")
    if backend == "cpu" and not cpu_backend.available():
        cpu_backend.warn_unavailable()
        return "torch"
    return backend


def recurrence(
    x: Tensor,
    weight_ih: Tensor,
    bias: Tensor,
    matrix: Tensor,
    eps: float,
    gated: bool,
    h0: Tensor | None = None,
    backend: str = "auto",
    last_only: bool = False,
) -> Tensor:
    """All hidden states of the recurrence, or the last alone.

    x: (B, T, m) inputs; weight_ih: (k*n, m) and bias: (k*n,) with k = 2 when gated
    ([V_h; V_z]); matrix: (n, n) recurrent matrix; h0: (B, n), zeros when None.
    Returns (T, B, n): h_1 .. h_T; with `last_only`, h_T (B, n), the same numbers (the cpu
    backend then makes no gradient for the other states).
    """
    batch, steps, m = x.shape
    n = matrix.shape[0]
    if h0 is None:
        h0 = x.new_zeros(batch, n)
    backend = resolve_backend(backend, x.device)
    if backend == "cpu":
        return cpu_backend.CpuRecurrence.apply(x, weight_ih, bias, matrix, h0, float(eps),
                                               bool(gated), last_only)
    if backend == "reference":
        states = torch.stack(reference_steps(x, weight_ih, bias, matrix, eps, gated, h0))
        return states[-1] if last_only else states
    # Input projection for every step as one matrix product, laid out time-major.
    x_proj = torch.addmm(bias, x.transpose(0, 1).reshape(steps * batch, m), weight_ih.t())
    x_proj = x_proj.view(steps, batch, -1)
    if backend == "torch":
        states = TorchRecurrence.apply(x_proj, matrix, h0, float(eps), bool(gated))
    else:
        from arnn.recurrence.triton_backend import TritonRecurrence

        states = TritonRecurrence.apply(x_proj, matrix, h0, float(eps), bool(gated))
    return states[-1] if last_only else states
