"""How long a study will take: an estimate from training budgets and measured throughputs,
printed before a study starts, and rescaled by a resumed study's own finished tasks."""

from __future__ import annotations

import math
import statistics

from .study_config import StudyConfig, Variant, approx_train_size, generator_config

# Single-thread training throughput measured on this project's 2-core machine (images/s), used
# only to print an estimate before a study starts (a resumed study rescales it by its own finished
# tasks, see `calibrate`). The CNN's is that of two 1-thread tasks side by side, as a study runs
# them (1,140-1,270 images/s in the standard study's 1% cells; one such task alone did 1,700).
# Per-task overhead covers start-up, the final evaluation on 10,000 test images, the ONNX export
# and the plots.
CLASSIFIER_IMAGES_PER_SECOND = {"shallow": 20000, "deep": 9000, "cnn": 1250, "transfer": 150}
GENERATOR_IMAGES_PER_SECOND = {"cgan": 3000, "cdcgan": 500, "acgan": 500, "sngan": 450}  # depth 0
# Each extra generator block pair (g_depth) adds this share to a step's time: acgan at full data,
# 612 images/s at depth 0 and 431 at depth 2 (1.42x the time per image). Each extra discriminator
# block pair (d_depth; D runs three times a step) adds D_BLOCK_TIME_SHARE: acgan at g_depth 2, two
# runs side by side, 175 s per epoch at d_depth 1 against 115 at d_depth 0 (1.52x: 1.42 -> 2.16).
G_BLOCK_TIME_SHARE = 0.21
D_BLOCK_TIME_SHARE = 0.74
TASK_OVERHEAD_SECONDS = {"classifier": 12, "generator": 10}


def estimate_seconds(cfg: StudyConfig, task: dict) -> float:
    """A rough single-task duration from the budgets and measured throughputs."""
    from .fit import epochs_for
    from .train_generator import steps_per_epoch, total_epochs

    n_real = approx_train_size(cfg, task["fraction"])
    if task["kind"] == "generator":
        gcfg = generator_config(cfg, task, n_real)
        images = total_epochs(gcfg, n_real) * steps_per_epoch(gcfg, n_real) * min(gcfg.optim.batch_size, n_real)
        o = gcfg.optim
        rate = GENERATOR_IMAGES_PER_SECOND[task["family"]] / (
            1 + G_BLOCK_TIME_SHARE * o.g_depth + D_BLOCK_TIME_SHARE * o.d_depth)
        return TASK_OVERHEAD_SECONDS["generator"] + images / rate
    v = Variant(**task["variant"])
    optim = cfg.optim_for(task["arch"])
    n = n_real * (1 + (v.ratio if v.mode == "mix" else 0))
    images = epochs_for(optim, n) * n
    if v.mode == "pretrain":
        images += epochs_for(optim, n_real * v.ratio) * n_real * v.ratio
    return TASK_OVERHEAD_SECONDS["classifier"] + images / CLASSIFIER_IMAGES_PER_SECOND[task["arch"]]


def calibrate(estimates: dict[str, float], tasks: list[dict], done: dict[str, dict]) -> dict[str, float]:
    """The estimates scaled, per kind of task, by how long the finished tasks of that kind really
    took here against their estimates (the median ratio, so a task that ran while the machine
    slept or was paused does not skew it), so a resumed study's ETA is this machine's."""
    out = dict(estimates)
    for kind in ("generator", "classifier"):
        ratios = [done[t["id"]]["seconds"] / estimates[t["id"]] for t in tasks if t["kind"] == kind
                  and "seconds" in done.get(t["id"], {}) and "error" not in done[t["id"]]]
        if ratios:
            factor = statistics.median(ratios)
            out.update({t["id"]: estimates[t["id"]] * factor for t in tasks if t["kind"] == kind})
    return out


def calibrated_estimates(cfg: StudyConfig, tasks: list[dict], done: dict[str, dict]) -> dict[str, float]:
    """Every task's estimate, scaled by the finished tasks' real times (``calibrate``)."""
    return calibrate({t["id"]: estimate_seconds(cfg, t) for t in tasks}, tasks, done)


def format_duration(seconds: float) -> str:
    minutes = math.ceil(seconds / 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes / 60:.1f} h"
