"""Classifier training throughput: ganaug's pipeline vs the usual tutorial pipeline, same model.

Run on demand (not part of the test suite):  .venv/bin/python benchmarks/bench_classifier.py

What is compared, in one process, on real Fashion-MNIST training images:

* tutorial: the pytorch/examples ``mnist/main.py`` recipe on CPU. A torchvision-style per-sample
  ``Dataset`` (uint8 tensor, ``PIL.Image.fromarray(img.numpy(), mode="L")`` per item, then
  ``ToTensor`` + ``Normalize`` reimplemented line for line, as torchvision is not a dependency),
  ``DataLoader(batch_size=64, shuffle=True)`` with the CPU defaults (no workers, no pinning), fp32,
  Adadelta(lr=1.0) and the example's ``train()`` loop. The example's models output log-probs and use
  ``nll_loss``; ganaug's output logits, so the loss is ``cross_entropy`` (the same computation).
* ganaug: the real ``ganaug.fit.fit`` with the architecture's defaults from ``CLASSIFIER_DEFAULTS``
  (batch size, channels-last, AdamW + schedule, label smoothing) and the precision
  ``--precision auto`` (``ganaug.precision``) picks, on one epoch of the same images; its own
  ``images_per_second`` counts training steps only (validation is excluded).

Why it is fair: both train the same ``nn.Module`` class from ``ganaug.models`` with the same thread
count in the same process. The tutorial normalises in its transform, so its model is built with
mean 0 / std 1 (the in-model ``Normalize`` still runs, as a no-op costing the same). Warm-up steps
run before every timed pass, and the pipelines alternate over ``--rounds`` so machine noise hits
both. The process applies ``tune_malloc()`` as the ganaug CLI does; the tutorial profits from it
too, so the ratio isolates the data path and precision (``--no-tune-malloc`` turns it off for both).

GFLOP/s: forward FLOPs per image from ``FlopCounterMode`` (convolutions and matmuls), x3 for
forward + backward, times images/s; printed next to measured 2048x2048 ``torch.mm`` peaks.
The malloc check trains the ganaug CNN in fresh subprocesses with glibc's defaults, with
``training_env()``'s MALLOC_* variables and with ``tune_malloc()``, and reports images/s and minor
page faults (``ru_minflt``) per step.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

import ganaug.fit
from ganaug.config import CLASSIFIER_DEFAULTS
from ganaug.data import get_dataset, load_split
from ganaug.fit import build_classifier, fit, step_probe
from ganaug.precision import training_precision
from ganaug.runtime import set_threads, training_env, tune_malloc

from common import (TutorialFashionMNIST, alternate_rounds, finish_report, matmul_peaks, peaks_line,
                    start_report)

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL_BATCH = 64  # pytorch/examples mnist/main.py --batch-size default
VAL_IMAGES = 1000  # fit() validates each epoch; outside its timed steps, so only needs to be small


# ---------------------------------------------------------------- tutorial pipeline

def tutorial_train(model, device, train_loader, optimizer, max_steps: int | None = None) -> int:
    """pytorch/examples mnist/main.py ``train()`` minus its log printing; returns images seen."""
    model.train()
    seen = 0
    for batch_idx, (data, target) in enumerate(train_loader):
        if batch_idx == max_steps:
            break
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        output = model(data)
        loss = F.cross_entropy(output, target)
        loss.backward()
        optimizer.step()
        seen += len(data)
    return seen


def run_tutorial(arch, info, x, y, device, warmup_steps: int) -> float:
    model = build_classifier(arch, replace(info, mean=0.0, std=1.0)).to(device)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    loader = DataLoader(TutorialFashionMNIST(x, y, info.mean, info.std),
                        batch_size=TUTORIAL_BATCH, shuffle=True)
    tutorial_train(model, device, loader, optimizer, max_steps=warmup_steps)
    start = time.perf_counter()
    seen = tutorial_train(model, device, loader, optimizer)
    return seen / (time.perf_counter() - start)


# ---------------------------------------------------------------- ganaug pipeline

def run_ganaug(arch, info, x, y, val_x, val_y, device, precision, warmup_steps: int) -> float:
    """One epoch of ``ganaug.fit.fit`` over (x, y) after a short warm-up fit; its images/s."""
    optim = replace(CLASSIFIER_DEFAULTS[arch], epochs=1, min_steps=0)
    model = build_classifier(arch, info)
    gen = torch.Generator().manual_seed(0)
    warm = warmup_steps * optim.batch_size
    fit(model, optim, x[:warm], y[:warm], val_x, val_y, device=device, precision=precision,
        generator=gen)
    return fit(model, optim, x, y, val_x, val_y, device=device, precision=precision,
               generator=gen).images_per_second


# ---------------------------------------------------------------- FLOPs and peaks

def train_flops_per_image(model: torch.nn.Module, batch: int = 64) -> float:
    """Forward FLOPs per image (FlopCounterMode), x3 for forward + backward."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.eval()(torch.rand(batch, 1, 28, 28))
    return 3 * counter.get_total_flops() / batch


# ---------------------------------------------------------------- malloc check

MALLOC_VARIANTS = ("glibc defaults", "training_env() MALLOC_*", "tune_malloc() mallopt")


class StepProbe:
    """Stands in for fit()'s progress bar (silent off a terminal anyway) and records the time and
    the process's minor page faults after every training step."""

    def __init__(self):
        self.marks = []

    def update(self, n: int = 1) -> None:
        self.marks.append((time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt))

    def __getattr__(self, name):  # set_postfix, close: nothing to do
        return lambda *args, **kwargs: None


def malloc_child(args) -> None:
    """In a fresh process: one ganaug CNN fit; images/s and faults over the steps after warm-up."""
    if args.malloc_child == MALLOC_VARIANTS.index("tune_malloc() mallopt"):
        tune_malloc()  # as ganaug.cli.main does, after torch is imported
    set_threads(args.threads)
    x, y = load_split(args.data_dir, "fashion-mnist", "train")
    optim = replace(CLASSIFIER_DEFAULTS["cnn"], epochs=1, min_steps=0)
    n = (args.warmup_steps + args.malloc_steps) * optim.batch_size
    probe = StepProbe()
    ganaug.fit.progress_bar = lambda *a, **k: probe
    info, cpu = get_dataset("fashion-mnist"), torch.device("cpu")
    precision, _ = training_precision("auto", cpu, lambda: step_probe(
        build_classifier("cnn", info), optim, info.num_classes, cpu))
    fit(build_classifier("cnn", info), optim, x[:n], y[:n],
        x[-256:], y[-256:], device=cpu, precision=precision,
        generator=torch.Generator().manual_seed(0))
    (t0, f0), (t1, f1) = probe.marks[args.warmup_steps - 1], probe.marks[-1]
    print(json.dumps({"images_per_second": args.malloc_steps * optim.batch_size / (t1 - t0),
                      "minor_faults_per_step": (f1 - f0) / args.malloc_steps}))


def malloc_check(args) -> list[dict]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    envs = (clean, training_env(clean), clean)
    rows = []
    for i, (name, env) in enumerate(zip(MALLOC_VARIANTS, envs)):
        cmd = [sys.executable, __file__, "--malloc-child", str(i), "--data-dir", str(args.data_dir),
               "--malloc-steps", str(args.malloc_steps), "--warmup-steps", str(args.warmup_steps)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"malloc check child {i} failed:\n{proc.stderr}")
        rows.append({"variant": name, **json.loads(proc.stdout.strip().splitlines()[-1])})
    return rows


# ---------------------------------------------------------------- main

def compare(args, report: dict) -> None:
    device = torch.device("cpu")
    info = get_dataset("fashion-mnist")
    x, y = load_split(args.data_dir, "fashion-mnist", "train")
    x, y, val_x, val_y = x[:args.images], y[:args.images], x[-VAL_IMAGES:], y[-VAL_IMAGES:]
    precision, choice = training_precision("auto", device, lambda: step_probe(
        build_classifier(args.arch, info), CLASSIFIER_DEFAULTS[args.arch], info.num_classes, device))
    report["precision_choice"] = choice
    flops = train_flops_per_image(build_classifier(args.arch, info))
    peaks = matmul_peaks()
    runs = {"tutorial": lambda: run_tutorial(args.arch, info, x, y, device, args.warmup_steps),
            "ganaug": lambda: run_ganaug(args.arch, info, x, y, val_x, val_y, device, precision,
                                         args.warmup_steps)}
    rounds = alternate_rounds(runs, args.rounds)
    pipelines = {}
    for name, prec, batch in (("tutorial", "fp32", TUTORIAL_BATCH),
                              ("ganaug", precision, CLASSIFIER_DEFAULTS[args.arch].batch_size)):
        ips = statistics.mean(rounds[name])
        pipelines[name] = {"batch_size": batch, "precision": prec, "rounds": rounds[name],
                           "images_per_second": ips, "gflops": ips * flops / 1e9,
                           "fraction_of_peak": ips * flops / 1e9 / peaks[prec]}
    ratio = pipelines["ganaug"]["images_per_second"] / pipelines["tutorial"]["images_per_second"]
    report.update(arch=args.arch, images=len(y), precision_auto=precision,
                  train_flops_per_image=flops, matmul_peak_gflops=peaks, pipelines=pipelines,
                  ratio_ganaug_over_tutorial=ratio)

    print("\n" + peaks_line(peaks))
    print(f"{args.arch}: {flops / 1e6:.1f} MFLOP per training image (forward x3), "
          f"{len(y)} images per pass, {args.rounds} rounds")
    print(f"{'pipeline':<10}{'batch':>6}{'prec':>6}{'rounds (images/s)':>22}{'mean':>8}"
          f"{'GFLOP/s':>9}{'of peak':>9}")
    for name, p in pipelines.items():
        per_round = " ".join(f"{v:.0f}" for v in p["rounds"])
        print(f"{name:<10}{p['batch_size']:>6}{p['precision']:>6}{per_round:>22}"
              f"{p['images_per_second']:>8.0f}{p['gflops']:>9.1f}{p['fraction_of_peak']:>9.1%}")
    print(f"ratio ganaug/tutorial: {ratio:.2f}x (project target >= 1.6x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="cnn", choices=tuple(CLASSIFIER_DEFAULTS))
    parser.add_argument("--images", type=int, default=60000, help="training images per timed pass")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup-steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (both pipelines)")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data")
    parser.add_argument("--malloc-check", choices=("on", "off", "only"), default="on")
    parser.add_argument("--malloc-steps", type=int, default=60)
    parser.add_argument("--no-tune-malloc", action="store_true")
    parser.add_argument("--out", type=Path,
                        default=ROOT / "benchmarks" / "results" / "classifier.json")
    parser.add_argument("--malloc-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.malloc_child is not None:
        return malloc_child(args)

    tuned = False if args.no_tune_malloc else tune_malloc()
    set_threads(args.threads)
    report = start_report(tuned)
    if args.malloc_check != "only":
        compare(args, report)
    if args.malloc_check != "off":
        rows = report["malloc_check"] = malloc_check(args)
        print(f"\nmalloc check: ganaug cnn fit, a fresh process each, {args.malloc_steps} steps "
              f"of {CLASSIFIER_DEFAULTS['cnn'].batch_size} timed after {args.warmup_steps} warm-up")
        print(f"{'variant':<26}{'images/s':>10}{'minor faults/step':>20}")
        for row in rows:
            print(f"{row['variant']:<26}{row['images_per_second']:>10.0f}"
                  f"{row['minor_faults_per_step']:>20.0f}")
    finish_report(report, args.out)


if __name__ == "__main__":
    main()
