"""The antisymmetric recurrence: one contract, several backends in one table.

A backend computes all hidden states of eq. 12 (``gated=False``) or eq. 13 (``gated=True``) for
a given recurrent matrix, with one signature (`Backend`):

    backend(x, weight_ih, bias, matrix, h0, eps, gated, last_only) -> states

x: (B, T, m) inputs; weight_ih: (k*n, m) and bias: (k*n,) with k = 2 when gated ([V_h; V_z]);
matrix: (n, n); h0: (B, n). Returns (T, B, n): h_1 .. h_T; with `last_only`, h_T (B, n), the
same numbers (a backend may then skip the gradients of the other states).

`BACKENDS` (identical results up to float rounding):
- ``reference``: per-step autograd loop, the definition and the test oracle;
- ``torch``: hoisted input projection, tight loop, hand-written backward (any device);
- ``cpu``: the time loop in compiled code, fused pointwise work, rows split between threads
  (CPU tensors only; compiled on first use, see cpu_build);
- ``triton``: the time loop inside one GPU kernel per direction (CUDA, or Triton's interpreter).

``auto`` is not a backend but a choice made once, by `resolve_backend`: triton on a CUDA device
(torch without Triton), cpu on the CPU (torch, said once, without a compiler), torch elsewhere
(meta, mps, ...). Models resolve it when they are built and keep the backend's function.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import Tensor

from arnn.recurrence import cpu_backend, cpu_build
from arnn.recurrence.reference import reference, reference_steps
from arnn.recurrence.torch_backend import torch_recurrence

__all__ = ["AUTO", "BACKENDS", "BACKEND_CHOICES", "Backend", "backend_function", "recurrence",
           "reference_steps", "resolve_backend", "triton_available"]

Backend = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor, float, bool, bool], Tensor]


def _triton(x: Tensor, weight_ih: Tensor, bias: Tensor, matrix: Tensor, h0: Tensor, eps: float,
            gated: bool, last_only: bool) -> Tensor:
    from arnn.recurrence.triton_backend import triton_recurrence  # imports Triton: on demand

    return triton_recurrence(x, weight_ih, bias, matrix, h0, eps, gated, last_only)


BACKENDS: dict[str, Backend] = {
    "reference": reference,
    "torch": torch_recurrence,
    "cpu": cpu_backend.cpu_recurrence,
    "triton": _triton,
}
AUTO = "auto"
BACKEND_CHOICES = (AUTO, *BACKENDS)  # what model.backend accepts


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
    """The backend that computes on `device`: `auto` chosen (see the module's text), a named one
    checked; ValueError in one line for a name that is no backend or cannot run there."""
    kind = torch.device(device).type
    if backend == AUTO:
        if kind == "cuda":
            return "triton" if triton_available(device) else "torch"
        if kind == "cpu" and cpu_build.available():
            return "cpu"
        if kind == "cpu":
            cpu_build.warn_unavailable()
        return "torch"
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is invalid: allowed: {', '.join(BACKEND_CHOICES)}")
    if backend == "cpu":
        if kind != "cpu":
            raise ValueError(f"backend='cpu' computes on the CPU, not on {kind}: use auto, torch"
                             " or triton there")
        if not cpu_build.available():
            raise ValueError(f"backend='cpu' is unavailable here ({cpu_build.unavailable_reason()})"
                             ": use auto or torch")
    if backend == "triton" and not triton_available(device):
        raise ValueError(f"backend='triton' needs a CUDA device (or TRITON_INTERPRET=1), not "
                         f"{kind}: use auto, torch or reference")
    return backend


def backend_function(backend: str, device: str | torch.device) -> tuple[str, Backend]:
    """The backend resolved for `device`, and its function."""
    name = resolve_backend(backend, device)
    return name, BACKENDS[name]


def recurrence(
    x: Tensor,
    weight_ih: Tensor,
    bias: Tensor,
    matrix: Tensor,
    eps: float,
    gated: bool,
    h0: Tensor | None = None,
    backend: str = AUTO,
    last_only: bool = False,
) -> Tensor:
    """All hidden states of the recurrence (h0: zeros when None), or the last alone, computed by
    `backend` (resolved for x's device on each call: the library's entry; models resolve once)."""
    if h0 is None:
        h0 = x.new_zeros(x.shape[0], matrix.shape[0])
    _, function = backend_function(backend, x.device)
    return function(x, weight_ih, bias, matrix, h0, float(eps), bool(gated), bool(last_only))
