"""Helpers shared by the benchmarks: the tutorial's per-sample data path, matmul peaks, rounds.

Imported by the scripts next to it (``python benchmarks/bench_*.py`` puts this folder on sys.path).
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

# ---------------------------------------------------------------- tutorial data path

def to_tensor(pic: Image.Image) -> torch.Tensor:
    """torchvision.transforms.functional.to_tensor for a PIL image: HWC uint8 -> CHW float / 255."""
    mode_to_nptype = {"I": np.int32, "I;16": np.int16, "F": np.float32}
    img = torch.from_numpy(np.array(pic, mode_to_nptype.get(pic.mode, np.uint8), copy=True))
    if pic.mode == "1":
        img = 255 * img
    img = img.view(pic.size[1], pic.size[0], len(pic.getbands()))
    img = img.permute((2, 0, 1)).contiguous()
    if isinstance(img, torch.ByteTensor):
        return img.to(dtype=torch.get_default_dtype()).div(255)
    return img


def normalize(tensor: torch.Tensor, mean, std) -> torch.Tensor:
    """torchvision.transforms.functional.normalize (inplace=False) for a float CHW tensor."""
    if not tensor.is_floating_point():
        raise TypeError("input tensor should be a float tensor")
    tensor = tensor.clone()
    mean = torch.as_tensor(mean, dtype=tensor.dtype, device=tensor.device)
    std = torch.as_tensor(std, dtype=tensor.dtype, device=tensor.device)
    if (std == 0).any():
        raise ValueError("std evaluated to zero, leading to division by zero")
    if mean.ndim == 1:
        mean = mean.view(-1, 1, 1)
    if std.ndim == 1:
        std = std.view(-1, 1, 1)
    return tensor.sub_(mean).div_(std)


class TutorialFashionMNIST(Dataset):
    """torchvision.datasets.FashionMNIST's __getitem__ with Compose([ToTensor(), Normalize()])."""

    def __init__(self, data: torch.Tensor, targets: torch.Tensor, mean: float, std: float):
        self.data, self.targets, self.mean, self.std = data, targets, (mean,), (std,)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        img, target = self.data[index], int(self.targets[index])
        img = Image.fromarray(img.numpy(), mode="L")
        return normalize(to_tensor(img), self.mean, self.std), target


# ---------------------------------------------------------------- peaks, rounds, machine

def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 8) -> float:
    """Best single ``torch.mm`` of two n x n matrices, in GFLOP/s."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def matmul_peaks() -> dict[str, float]:
    """GFLOP/s peaks of the two precisions the pipelines run in."""
    return {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}


def peaks_line(peaks: dict[str, float]) -> str:
    return (f"matmul peak (2048x2048 torch.mm, best of 8): fp32 {peaks['fp32']:.0f} GFLOP/s, "
            f"bf16 {peaks['bf16']:.0f} GFLOP/s")


def start_report(tuned: bool) -> dict:
    """The machine facts every benchmark records first, printed as its header line."""
    report = {"cpu": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
              "malloc_tuned_in_process": tuned, "load_average_start": os.getloadavg()}
    print(f"{report['cpu']}, {report['threads']} torch threads, torch {torch.__version__}, "
          f"tune_malloc in process: {tuned}, load average {report['load_average_start'][0]:.2f}")
    return report


def finish_report(report: dict, out: Path) -> None:
    """Record the load at the end (other work on the machine skews the numbers) and write ``out``."""
    report["load_average_end"] = os.getloadavg()
    print(f"\nload average (1 min) at start {report['load_average_start'][0]:.2f}, "
          f"at end {report['load_average_end'][0]:.2f}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten: {out}")


def alternate_rounds(runs: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Images/s of every pipeline in ``runs`` per round; odd rounds run them in reverse order so
    drift on the machine hits all of them."""
    results = {name: [] for name in runs}
    width = max(8, *map(len, runs))
    for r in range(rounds):
        for name in (list(runs) if r % 2 == 0 else list(reversed(runs))):
            results[name].append(runs[name]())
            print(f"  round {r + 1} {name:{width}s} {results[name][-1]:8.0f} images/s", flush=True)
    return results


def cpu_name() -> str:
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")),
                platform.processor())
