"""``--precision auto`` for training: bf16 autocast only where it helps.

Native bf16 is necessary, not sufficient: on an Intel Xeon with avx512_bf16 but no AMX, fp32
trained ganaug's CNN 1.4x and the MLP cGAN 1.5x faster than bf16 autocast, while on an AMD EPYC
bf16 was the faster one. So where the hardware has native bf16 (on CPU), ``auto`` times a few
training steps of the model about to be trained in both precisions and keeps bf16 only if it
saves at least ``MIN_SPEEDUP``. The choice is measured once per machine, model, batch size and
thread count and cached (``GANAUG_CACHE_DIR``, default ``~/.cache/ganaug``), so every later
run there, a study's every task and a resumed run train in the same precision; the run's
config.json records the choice and its timings. The first process to cache a choice wins, so
two study workers that measure at the same time still agree. ``--precision fp32|bf16`` skips
the measurement.

This is hand-written: no library picks an autocast precision by timing on CPU.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from .runtime import bf16_native

WARMUP_STEPS = 2  # per precision, untimed: oneDNN builds its bf16 kernels on the first calls
TIMED_ROUNDS = 4  # rounds of one fp32 and one bf16 step, interleaved so load changes hit both
MIN_SPEEDUP = 1.10  # bf16 must make a step at least 10% faster; otherwise fp32 (exact) wins
CACHE_ENV = "GANAUG_CACHE_DIR"


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ganaug"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure(step: Callable[[str], None]) -> dict[str, float]:
    """Median seconds per training step in each precision; ``step(precision)`` runs one."""
    for precision in ("fp32", "bf16"):
        for _ in range(WARMUP_STEPS):
            step(precision)
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(TIMED_ROUNDS):
        for precision in times:
            start = time.perf_counter()
            step(precision)
            times[precision].append(time.perf_counter() - start)
    return {p: statistics.median(t) for p, t in times.items()}


def decide(seconds: dict[str, float]) -> str:
    return "bf16" if seconds["fp32"] >= MIN_SPEEDUP * seconds["bf16"] else "fp32"


def _read_choice(path: Path) -> dict | None:
    """A cached choice, or None if there is none (or it is unreadable: it is measured again)."""
    try:
        choice = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(choice, dict) and choice.get("precision") in ("fp32", "bf16") and "step_ms" in choice
    return choice if ok else None


def _cached_choice(path: Path, choice: dict) -> dict:
    """Write ``choice`` to ``path`` unless a choice is there already; return the one that is."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w") as f:
            json.dump(choice, f, indent=1)
        try:
            os.link(tmp, path)  # atomic and exclusive: fails if another process cached first
        except FileExistsError:
            if _read_choice(path) is None:  # an unreadable entry is replaced, not kept forever
                os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return _read_choice(path) or choice
    except OSError:  # no writable cache: this run uses its own measurement
        return choice


def training_precision(precision: str, device: torch.device,
                       probe: Callable[[], tuple[dict, Callable[[str], None]]]) -> tuple[str, dict]:
    """The precision to train in, and how it was chosen (for config.json).

    ``probe()`` returns a key describing the training step (model, batch size) and
    ``step(precision)``, which runs one on throwaway models (never the run's model, optimiser or
    random streams). Only ``auto`` on a CPU with native bf16 calls ``probe``, and ``step`` runs
    only when nothing is cached for the key.
    """
    if precision != "auto":
        return precision, {"rule": "requested"}
    if not bf16_native(device):
        return "fp32", {"rule": "no native bf16"}
    if device.type != "cpu":  # tensor cores: bf16 autocast is the faster path on GPUs that have it
        return "bf16", {"rule": "native bf16 on GPU"}
    with torch.random.fork_rng(devices=[]):
        key, step = probe()
    full_key = {**key, "cpu": cpu_name(), "threads": torch.get_num_threads(),
                "torch": torch.__version__}
    digest = hashlib.sha256(json.dumps(full_key, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / "precision" / f"{digest}.json"
    choice = _read_choice(path)
    if choice is None:
        with torch.random.fork_rng(devices=[]), torch.enable_grad():
            seconds = measure(step)
        choice = _cached_choice(path, {"precision": decide(seconds), "key": full_key,
                                       "step_ms": {p: round(s * 1e3, 2) for p, s in seconds.items()},
                                       "min_speedup": MIN_SPEEDUP})
    return choice["precision"], {"rule": "measured", "step_ms": choice["step_ms"],
                                 "min_speedup": choice.get("min_speedup", MIN_SPEEDUP), "cache": str(path)}
