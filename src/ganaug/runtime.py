"""Device, precision, seeding and process settings that make training fast and repeatable."""

from __future__ import annotations

import contextlib
import ctypes
import os
import random

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel

from .errors import UserError

# glibc returns freed memory to the OS eagerly and serves big blocks with fresh mmaps, so every
# training step pays thousands of page faults (measured here: 4,900 per CNN step, 15-50% slower).
# These thresholds keep the memory in the heap. `tune_malloc` applies them to the running process
# (mallopt) at start-up; `training_env` puts them in the environment of child processes.
MMAP_THRESHOLD = 1 << 30
TRIM_THRESHOLD = 1 << 32
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD),
              "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD)}
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # from glibc's malloc.h


def tune_malloc() -> bool:
    """Apply the thresholds to this process; False where the C library is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        int_max = 2**31 - 1  # mallopt takes a C int
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, min(MMAP_THRESHOLD, int_max))
                    and libc.mallopt(_M_TRIM_THRESHOLD, min(TRIM_THRESHOLD, int_max)))
    except (OSError, AttributeError):
        return False


def training_env(base: dict | None = None) -> dict:
    """An environment for a child training process: ``base`` (default os.environ) + malloc settings."""
    env = dict(os.environ if base is None else base)
    env.update(MALLOC_ENV)
    return env


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was requested but no CUDA device is available; use "
                        "--device cpu or auto")
    return torch.device(name)


def bf16_native(device: torch.device) -> bool:
    """Whether the hardware computes bf16 natively (AVX512-BF16/AMX on CPU, Ampere+ on CUDA)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast(device: torch.device, precision: str):
    """bf16 autocast for the forward pass of training; a no-op for fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_everything(seed: int) -> torch.Generator:
    """Seed every RNG training touches; return a generator for data order and augmentation."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """channels_last for a 4-D tensor stored that way (and not also plain contiguous, as a
    one-channel batch is), else contiguous_format."""
    channels_last = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if channels_last else torch.contiguous_format


def set_threads(n: int | None) -> None:
    """``--threads``: torch's pool and numpy/scipy's BLAS and OpenMP pools (the generator metrics
    and statistics run there), which otherwise start a thread per core whatever torch uses."""
    if n:
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(n)
        threadpool_limits(limits=n)


def ema_update(decay: float):
    """EMA with a warm-up of the decay, min(decay, (1 + n) / (10 + n)) after n updates: a fixed
    0.999 would still weigh the untrained first weights by 0.999^n (43% after 840 steps), which
    blurs the samples of short runs (small data)."""

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged) -> None:
        if not torch.is_floating_point(averaged[0]):  # counters such as num_batches_tracked
            torch._foreach_copy_(averaged, current)
            return
        n = int(n_averaged)
        d = min(decay, (1 + n) / (10 + n))
        torch._foreach_lerp_(averaged, current, 1 - d)

    return update


def ema_model(model: torch.nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of ``model``'s weights and buffers (``ema_update``'s decay);
    call ``update_parameters(model)`` after each optimiser step, use ``.module`` to evaluate."""
    return AveragedModel(model, multi_avg_fn=ema_update(decay), use_buffers=True)
