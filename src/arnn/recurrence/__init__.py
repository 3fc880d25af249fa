"""The antisymmetric recurrence: one function, several backends chosen at run time.

`recurrence` computes all hidden states of eq. 12 (``gated=False``) or eq. 13 (``gated=True``)
for a given recurrent matrix. The three recurrent models differ only in that flag and in how
they form the matrix (antisymmetric minus diffusion, or unstructured for the ablation).

Backends (identical results up to float rounding):
- ``reference``: per-step autograd loop, the definition and the test oracle;
- ``torch``: hoisted input projection, tight loop, hand-written backward (CPU and CUDA);
- ``triton``: the time loop inside one GPU kernel per direction (CUDA).
``auto`` picks triton on CUDA when available, else torch.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from arnn.recurrence.reference import reference_steps
from arnn.recurrence.torch_backend import TorchRecurrence

__all__ = ["recurrence", "reference_steps", "resolve_backend", "triton_available", "BACKENDS"]

BACKENDS = ("reference", "torch", "triton")


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
    if backend == "auto":
        on_gpu = torch.device(device).type == "cuda"
        return "triton" if on_gpu and triton_available(device) else "torch"
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is invalid: allowed: auto, {', '.join(BACKENDS)}")
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
) -> Tensor:
    """All hidden states of the recurrence.

    x: (B, T, m) inputs; weight_ih: (k*n, m) and bias: (k*n,) with k = 2 when gated
    ([V_h; V_z]); matrix: (n, n) recurrent matrix; h0: (B, n), zeros when None.
    Returns (T, B, n): h_1 .. h_T.
    """
    batch, steps, m = x.shape
    n = matrix.shape[0]
    if h0 is None:
        h0 = x.new_zeros(batch, n)
    backend = resolve_backend(backend, x.device)
    if backend == "reference":
        return torch.stack(reference_steps(x, weight_ih, bias, matrix, eps, gated, h0))
    # Input projection for every step as one matrix product, laid out time-major.
    x_proj = torch.addmm(bias, x.transpose(0, 1).reshape(steps * batch, m), weight_ih.t())
    x_proj = x_proj.view(steps, batch, -1)
    if backend == "torch":
        return TorchRecurrence.apply(x_proj, matrix, h0, float(eps), bool(gated))
    from arnn.recurrence.triton_backend import TritonRecurrence

    return TritonRecurrence.apply(x_proj, matrix, h0, float(eps), bool(gated))
