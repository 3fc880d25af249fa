"""The `cpu` backend: the recurrence's time loop in compiled code (cpu_kernel.cpp), forward and
backward, each batch row's whole sequence on one thread.

The kernel is plain C++ (no PyTorch headers): compiled once per machine with the system's C++
compiler (`$CXX`, else g++ or c++) for the CPU it runs on (`-march=native`), cached under
`$ARNN_CACHE_DIR` (default `~/.cache/arnn`) by a digest of its source, the flags, the compiler's
version and the CPU, and loaded with ctypes; a compile takes about 2 s, a cached load
milliseconds. Without a compiler, or if it fails, `available()` is False with the reason, and
the recurrence uses the torch backend instead, saying so once.

Threads: the batch rows are split between `torch.get_num_threads()` threads (train.threads),
torch's own OpenMP threads (the kernel is linked with -fopenmp, and the runtime torch loaded is
the one it finds), and a row is computed the same way whatever thread has it: the states, the
recurrent matrix's gradient (each of its rows summed by one thread, in one order) and dL/dh0 do
not depend on the thread count; the input weights' gradients are summed per thread.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from arnn.recurrence.torch_backend import matrix_gradient

log = logging.getLogger("arnn")
SOURCE = Path(__file__).with_name("cpu_kernel.cpp")
FLAGS = ["-O3", "-march=native", "-ffp-contract=fast", "-fno-math-errno", "-std=c++17",
         "-shared", "-fPIC", "-fopenmp"]


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "g++", "c++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cache_dir() -> Path:
    base = os.environ.get("ARNN_CACHE_DIR") or Path(
        os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "arnn"
    return Path(base) / "cpu_kernel"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith("model name")), "") + (
                platform.machine())
    except OSError:
        return platform.machine()


def _build() -> Path:
    """The compiled kernel for this machine: from the cache, or compiled into it (atomically:
    processes compiling at once each rename a whole library into place)."""
    compiler = _compiler()
    if compiler is None:
        raise RuntimeError("no C++ compiler (set CXX, or install g++)")
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                             timeout=30).stdout.split("\n")[0]
    digest = hashlib.sha256("\0".join([SOURCE.read_text(), *FLAGS, version, _cpu_model()])
                            .encode()).hexdigest()[:16]
    target = _cache_dir() / digest / "libarnn_cpu.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        built = Path(tmp) / target.name
        proc = subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", str(built)],
                              capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"{Path(compiler).name} failed: "
                               f"{' '.join(proc.stderr.split())[:300]}")
        os.replace(built, target)
    return target


@lru_cache(maxsize=1)
def _library() -> ctypes.CDLL | str:
    """The loaded kernel, or why there is none."""
    try:
        lib = ctypes.CDLL(str(_build()))
    except (OSError, RuntimeError, subprocess.SubprocessError) as e:
        return str(e)
    i, p, f, d = ctypes.c_int, ctypes.c_void_p, ctypes.c_float, ctypes.c_double
    lib.arnn_forward_f32.argtypes = [i, i, i, i, p, p, p, p, i, p, f, p, p, i]
    lib.arnn_backward_f32.argtypes = [i, i, i, i, p, p, p, f, p, p, p, p, i, p, i]
    lib.arnn_forward_f64.argtypes = [i, i, i, i, p, p, d, p, p, i]
    lib.arnn_backward_f64.argtypes = [i, i, i, i, p, p, p, d, p, p, p, i]
    lib.arnn_matrix_gradient_f32.argtypes = [ctypes.c_long, i, p, p, p, i]
    lib.arnn_tanh_f32.argtypes = lib.arnn_sigmoid_f32.argtypes = [p, p, ctypes.c_long]
    return lib


def available() -> bool:
    return not isinstance(_library(), str)


def unavailable_reason() -> str | None:
    lib = _library()
    return lib if isinstance(lib, str) else None


def kernel() -> ctypes.CDLL:
    lib = _library()
    if isinstance(lib, str):
        raise RuntimeError(f"the cpu backend is unavailable: {lib}")
    return lib


def _ptr(t: Tensor) -> int:
    return t.data_ptr()


def _suffix(dtype: torch.dtype) -> str:
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"the cpu backend computes in float32 or float64, not {dtype}")
    return "f32" if dtype == torch.float32 else "f64"


FUSED_INPUTS = 8  # up to this many inputs per step, the kernel sums the input weights' grads


class CpuRecurrence(torch.autograd.Function):
    """states = f(x, weight_ih, bias, matrix, h0): x (B, T, m), weight_ih (k n, m) and bias
    (k n,) with k = 2 if gated, matrix (n, n), h0 (B, n); returns h_1..h_T as (T, B, n), or h_T
    alone (B, n) when `last_only` (then no gradient of the other states exists, nor is made).
    For up to FUSED_INPUTS inputs per step (float32) the kernel computes the input projection
    inside the loop and, in backward, sums the input weights' and biases' gradients as it goes:
    neither every step's projections nor their gradients are stored. With more inputs, the
    projection of all steps is one matrix product before the loop, its gradient one after."""

    @staticmethod
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
    def backward(ctx, grad: Tensor):
        x_tm, weight_ih, matrix, states, acts = ctx.saved_tensors
        steps, batch, kn = acts.shape
        n, m, threads = matrix.shape[0], x_tm.shape[1], torch.get_num_threads()
        da = acts.new_empty(steps, batch, n)
        if ctx.last_only:  # dL/dh_T comes in through dh; no other state has a gradient
            dh, grad_states = grad.contiguous().clone(), None
        else:
            dh, grad_states = acts.new_zeros(batch, n), grad.contiguous()
        fuse = acts.dtype == torch.float32 and m <= FUSED_INPUTS and not ctx.needs_input_grad[0]
        grad_pre = None if fuse else acts.new_empty(steps, batch, kn)
        dwb = acts.new_zeros(threads, m + 1, kn, dtype=torch.float64) if fuse else None
        lib, gs = kernel(), None if grad_states is None else _ptr(grad_states)
        common = (steps, batch, n, int(ctx.gated), gs, _ptr(acts),
                  _ptr(matrix.detach().contiguous()), ctx.eps)
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
            grad_x = (flat @ weight_ih).view(steps, batch, m).transpose(0, 1)
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


def warn_unavailable() -> None:
    """One line, once per process: the torch backend stands in."""
    if not _warned:
        _warned.append(True)
        log.warning("the cpu backend is unavailable (%s): using the torch backend, the same "
                    "computation, slower", unavailable_reason())


_warned: list[bool] = []
