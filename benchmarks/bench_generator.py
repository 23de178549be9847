"""Generator training throughput: ganaug's pipeline vs the popular single-file GAN scripts, same models.

Run on demand (not part of the test suite):  .venv/bin/python benchmarks/bench_generator.py

What is compared, in one process, on real Fashion-MNIST training images, per family (``cgan``:
MLP G and D; ``cdcgan``: convolutional G and D with a label plane):

* tutorial: eriklindernoren/PyTorch-GAN ``implementations/cgan/cgan.py`` on CPU, and the same loop
  around the convolutional models (that repository's ``dcgan.py`` is the same loop, unconditional).
  A torchvision-style per-sample ``Dataset`` (``PIL.Image.fromarray`` per item, then ``ToTensor`` +
  ``Normalize((0.5,), (0.5,))`` reimplemented line for line in ``common.py``, as torchvision is not a
  dependency), ``DataLoader(batch_size=64, shuffle=True)`` with no workers, fp32, contiguous
  tensors, Adam(lr=2e-4, betas=(0.5, 0.999)) for G and D, and the script's loop: per batch, z from
  ``np.random.normal`` and labels from ``np.random.randint``, a G step (D on the fakes), then a D
  step on the real batch and on ``fake.detach()`` with ``d_loss = (real + fake) / 2``, and the two
  ``.item()`` calls of its per-batch print (the print itself and the every-400-batches sample grid
  are left out). No DiffAugment, no EMA: the scripts have neither.
* ganaug: the real ``ganaug.train_generator.train_loop`` (uint8 images in memory batched by index,
  ``to_input``, ``train_step``) for one epoch, with the family's ``GENERATOR_DEFAULTS`` (batch size,
  channels-last, DiffAugment, EMA, Adam settings) and the precision ``--precision auto`` (``ganaug.precision``)
  picks; and the same again in fp32 so the share of bf16 is visible. Its images/s is
  ``train_loop``'s own clock (``state.seconds``), which the CLI reports as ``train_images_per_second``.

Why it is fair: both pipelines train the same ``nn.Module`` classes, built by
``GENERATORS[family].make_g / make_d`` with the family defaults' z_dim, widths and dropout, with the
same thread count in the same process. cgan.py uses ``MSELoss`` (least squares) and dcgan.py
``BCELoss`` after a ``Sigmoid``; ganaug's discriminators return logits and its bce families train
with softplus (BCE with logits), so the tutorial loop uses ``binary_cross_entropy_with_logits``,
dcgan.py's loss fused with its sigmoid; on a vector of N logits any of these costs next to nothing.
The scripts feed [-1, 1] images, while ganaug's modules take [0, 1] and map to [-1, 1] inside
(generators end in tanh and map back), so the loop rescales each normalised batch with
``(imgs + 1) / 2``, one elementwise op per batch; the per-sample PIL path, the cost being measured,
stays. cgan.py resizes to 32x32 by default; these models are 28x28, so there is no ``Resize``.
Warm-up steps run before every timed pass, and the pipelines alternate over ``--rounds``. The
process applies ``tune_malloc()`` as the ganaug CLI does; the tutorial profits from it too
(``--no-tune-malloc`` turns it off for both).

GFLOP/s: the FLOPs of one real training step (G forward and backward, D forward and backward on the
real and on the fake batch), counted by ``FlopCounterMode`` over ``train_step`` and over one
tutorial step, divided by the batch size, times images/s; printed next to measured 2048x2048
``torch.mm`` peaks in fp32 and bf16. ``--sweep`` also times ganaug's pipeline with other batch
sizes, precisions and layouts, and without DiffAugment and EMA, one pass each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from ganaug.data import get_dataset, load_split
from ganaug.fit import to_input
from ganaug.gan_config import GENERATOR_DEFAULTS, generator_config
from ganaug.models.generators import GENERATORS
from ganaug.precision import training_precision
from ganaug.runtime import set_threads, tune_malloc
from ganaug.train_generator import build_state, step_probe, steps_per_epoch, train_loop, train_step

from common import (TutorialFashionMNIST, alternate_rounds, finish_report, matmul_peaks, peaks_line,
                    start_report)

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("cgan", "cdcgan")  # the two the scripts have a counterpart for
TARGETS = {"cgan": 3.0, "cdcgan": 1.5}  # ganaug/tutorial, issue 4
TUTORIAL_BATCH = 64  # PyTorch-GAN --batch_size default
TUTORIAL_LR, TUTORIAL_BETAS = 2e-4, (0.5, 0.999)  # PyTorch-GAN --lr, --b1, --b2 defaults
CPU = torch.device("cpu")


# ---------------------------------------------------------------- tutorial pipeline

def build_models(family: str, num_classes: int):
    """ganaug's G and D of ``family`` with its default sizes, as both pipelines use them."""
    o = GENERATOR_DEFAULTS[family]
    fam = GENERATORS[family]
    return fam.make_g(num_classes, o.z_dim, o.g_width), fam.make_d(num_classes, o.d_width, o.d_dropout)


def tutorial_train(generator, discriminator, dataloader, optimizer_G, optimizer_D, latent_dim: int,
                   n_classes: int, max_steps: int | None = None) -> int:
    """The epoch loop of PyTorch-GAN's cgan.py (``Variable`` wrappers dropped: no-ops since torch
    0.4; no print, no sample grid); returns images seen."""
    adversarial_loss = F.binary_cross_entropy_with_logits
    generator.train()
    discriminator.train()
    seen = 0
    for i, (imgs, labels) in enumerate(dataloader):
        if i == max_steps:
            break
        batch_size = imgs.shape[0]

        # Adversarial ground truths ([N]: ganaug's discriminators return one logit per image)
        valid = torch.FloatTensor(batch_size).fill_(1.0)
        fake = torch.FloatTensor(batch_size).fill_(0.0)

        # Configure input; ganaug's modules take [0, 1], the script's transform gives [-1, 1]
        real_imgs = (imgs.type(torch.FloatTensor) + 1) / 2
        labels = labels.type(torch.LongTensor)

        #  Train Generator
        optimizer_G.zero_grad()
        z = torch.FloatTensor(np.random.normal(0, 1, (batch_size, latent_dim)))
        gen_labels = torch.LongTensor(np.random.randint(0, n_classes, batch_size))
        gen_imgs = generator(z, gen_labels)
        validity, _ = discriminator(gen_imgs, gen_labels)
        g_loss = adversarial_loss(validity, valid)
        g_loss.backward()
        optimizer_G.step()

        #  Train Discriminator
        optimizer_D.zero_grad()
        validity_real, _ = discriminator(real_imgs, labels)
        d_real_loss = adversarial_loss(validity_real, valid)
        validity_fake, _ = discriminator(gen_imgs.detach(), gen_labels)
        d_fake_loss = adversarial_loss(validity_fake, fake)
        d_loss = (d_real_loss + d_fake_loss) / 2
        d_loss.backward()
        optimizer_D.step()

        d_loss.item(), g_loss.item()  # the script formats both into its per-batch print
        seen += batch_size
    return seen


def tutorial_setup(family: str, info, x, y):
    torch.manual_seed(0)
    np.random.seed(0)
    g, d = build_models(family, info.num_classes)
    opt_g = torch.optim.Adam(g.parameters(), lr=TUTORIAL_LR, betas=TUTORIAL_BETAS)
    opt_d = torch.optim.Adam(d.parameters(), lr=TUTORIAL_LR, betas=TUTORIAL_BETAS)
    loader = DataLoader(TutorialFashionMNIST(x, y, 0.5, 0.5), batch_size=TUTORIAL_BATCH, shuffle=True)
    return g, d, loader, opt_g, opt_d, GENERATOR_DEFAULTS[family].z_dim, info.num_classes


def run_tutorial(family: str, info, x, y, warmup_steps: int) -> float:
    args = tutorial_setup(family, info, x, y)
    tutorial_train(*args, max_steps=warmup_steps)
    start = time.perf_counter()
    seen = tutorial_train(*args)
    return seen / (time.perf_counter() - start)


# ---------------------------------------------------------------- ganaug pipeline

def bench_config(family: str, **optim):
    """The family's one-epoch config with DiffAugment on, as for the small subsets it is made for
    (the full split's default is off): ganaug's side does the augmentation the scripts skip."""
    return generator_config(family, epochs=1, **{"diffaugment": True, **optim})


def run_ganaug(family: str, info, x, y, precision: str, warmup_steps: int, **optim) -> float:
    """One epoch of ``train_loop`` over (x, y) after a short warm-up epoch; its images/s.
    ``optim`` overrides ``GanOptim`` fields (the sweep); none = ``bench_config``'s."""
    cfg = bench_config(family, precision=precision, **optim)
    state = build_state(cfg, info, CPU)
    batch = cfg.optim.batch_size
    no_checkpoint = lambda s: None  # noqa: E731 (the CLI writes one here, outside the clock)
    if warmup_steps:
        train_loop(state, cfg, x[:warmup_steps * batch], y[:warmup_steps * batch],
                   info.num_classes, CPU, precision, no_checkpoint, "warm-up")
        state.epoch, state.seconds = 0, 0.0
    train_loop(state, cfg, x, y, info.num_classes, CPU, precision, no_checkpoint, "timed")
    return steps_per_epoch(cfg, len(y)) * min(batch, len(y)) / state.seconds


# ---------------------------------------------------------------- FLOPs

def ganaug_step_flops(family: str, info, x, y, batch: int = TUTORIAL_BATCH) -> float:
    """FLOPs per real image of one ``train_step`` (fp32; autocast changes dtypes, not FLOPs)."""
    cfg = bench_config(family)
    state = build_state(cfg, info, CPU)
    real = to_input(x[:batch], cfg.optim.channels_last)
    with FlopCounterMode(display=False) as counter:
        train_step(state, GENERATORS[family], cfg, real, y[:batch], info.num_classes, CPU, "fp32")
    return counter.get_total_flops() / batch


def tutorial_step_flops(family: str, info, x, y) -> float:
    """FLOPs per real image of one step of the tutorial loop (a cross-check of the same models)."""
    args = tutorial_setup(family, info, x[:TUTORIAL_BATCH], y[:TUTORIAL_BATCH])
    with FlopCounterMode(display=False) as counter:
        seen = tutorial_train(*args, max_steps=1)
    return counter.get_total_flops() / seen


# ---------------------------------------------------------------- comparison and sweep

def sweep_variants(family: str, precision: str, batches) -> list[dict]:
    """GanOptim overrides to time besides the defaults: batch x precision (x layout for conv),
    and the defaults without DiffAugment, then without EMA (the scripts have neither)."""
    conv = family != "cgan"  # channels-last changes nothing for the MLP's [N, 1, 28, 28] input
    precisions = (precision, "fp32") if precision != "fp32" else ("fp32",)
    layouts = (True, False) if conv else (False,)
    rows = [{"batch_size": b, "precision": p, "channels_last": cl}
            for b in batches for p in precisions for cl in layouts]
    rows += [{"precision": precision, "diffaugment": False}, {"precision": precision, "ema": False}]
    return rows


def measure_family(family: str, info, x, y, args, peaks: dict) -> dict:
    batch = GENERATOR_DEFAULTS[family].batch_size
    cfg = bench_config(family)
    precision, choice = training_precision("auto", CPU, lambda: step_probe(cfg, info, CPU))
    runs = {"tutorial": lambda: run_tutorial(family, info, x, y, args.warmup_steps),
            "ganaug": lambda: run_ganaug(family, info, x, y, precision, args.warmup_steps)}
    specs = {"tutorial": (TUTORIAL_BATCH, "fp32"), "ganaug": (batch, precision)}
    if precision != "fp32":
        runs["ganaug-fp32"] = lambda: run_ganaug(family, info, x, y, "fp32", args.warmup_steps)
        specs["ganaug-fp32"] = (batch, "fp32")
    flops = ganaug_step_flops(family, info, x, y)
    flops_tutorial = tutorial_step_flops(family, info, x, y)
    print(f"\n{family}: {len(y)} images per pass, {args.rounds} rounds, "
          f"{args.warmup_steps} warm-up steps per pass", flush=True)
    rounds = alternate_rounds(runs, args.rounds)
    pipelines = {}
    for name, (b, prec) in specs.items():
        ips = statistics.mean(rounds[name])
        gflops = ips * flops / 1e9
        pipelines[name] = {"batch_size": b, "precision": prec, "rounds": rounds[name],
                           "images_per_second": ips, "gflops": gflops,
                           "fraction_of_peak": gflops / peaks[prec]}
    tutorial_ips = pipelines["tutorial"]["images_per_second"]
    ratios = {name: p["images_per_second"] / tutorial_ips
              for name, p in pipelines.items() if name != "tutorial"}
    result = {"defaults": asdict(GENERATOR_DEFAULTS[family]), "precision_auto": precision,
              "precision_choice": choice,
              "train_flops_per_image": flops, "train_flops_per_image_tutorial": flops_tutorial,
              "pipelines": pipelines, "ratio_over_tutorial": ratios, "target_ratio": TARGETS[family]}

    print(f"{family}: {flops / 1e6:.2f} MFLOP per real image and training step "
          f"(tutorial step: {flops_tutorial / 1e6:.2f})")
    print(f"{'pipeline':<13}{'batch':>6}{'prec':>6}{'rounds (images/s)':>22}{'mean':>8}"
          f"{'GFLOP/s':>9}{'of peak':>9}{'ratio':>7}")
    for name, p in pipelines.items():
        per_round = " ".join(f"{v:.0f}" for v in p["rounds"])
        ratio = f"{ratios.get(name, 1.0):.2f}x"
        print(f"{name:<13}{p['batch_size']:>6}{p['precision']:>6}{per_round:>22}"
              f"{p['images_per_second']:>8.0f}{p['gflops']:>9.1f}{p['fraction_of_peak']:>9.1%}"
              f"{ratio:>7}")
    print(f"ratio ganaug/tutorial: {ratios['ganaug']:.2f}x (project target >= {TARGETS[family]}x)")
    if args.sweep:
        result["sweep"] = sweep(family, info, x, y, args, precision, tutorial_ips)
    return result


def sweep(family: str, info, x, y, args, precision: str, tutorial_ips: float) -> list[dict]:
    defaults = GENERATOR_DEFAULTS[family]
    print(f"\n{family} sweep: ganaug pipeline, one pass each (defaults: batch {defaults.batch_size}, "
          f"{precision}, channels_last {defaults.channels_last})")
    print(f"{'batch':>6}{'prec':>6}{'ch-last':>8}{'DiffAug':>8}{'EMA':>5}{'images/s':>10}{'ratio':>7}")
    rows = []
    for variant in sweep_variants(family, precision, args.sweep_batches):
        prec = variant.pop("precision")
        ips = run_ganaug(family, info, x, y, prec, args.warmup_steps, **variant)
        o = bench_config(family, **variant).optim
        row = {"batch_size": o.batch_size, "precision": prec, "channels_last": o.channels_last,
               "diffaugment": o.diffaugment, "ema": o.ema, "images_per_second": ips,
               "ratio_over_tutorial": ips / tutorial_ips}
        rows.append(row)
        flags = f"{'on' if o.diffaugment else 'off':>8}{'on' if o.ema else 'off':>5}"
        print(f"{o.batch_size:>6}{prec:>6}{'on' if o.channels_last else 'off':>8}{flags}{ips:>10.0f}"
              f"{ips / tutorial_ips:>6.2f}x", flush=True)
    return rows


# ---------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--family", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--images", type=int, default=60000, help="training images per timed pass")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup-steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (both pipelines)")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data")
    parser.add_argument("--sweep", action="store_true",
                        help="also time ganaug per --sweep-batches x bf16/fp32 x channels-last "
                             "on/off (conv), and without DiffAugment, without EMA; one pass each")
    parser.add_argument("--sweep-batches", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--no-tune-malloc", action="store_true")
    parser.add_argument("--out", type=Path,
                        default=ROOT / "benchmarks" / "results" / "generator.json")
    args = parser.parse_args()

    os.environ.setdefault("GANAUG_PROGRESS", "0")  # train_loop's bar would clutter the table
    tuned = False if args.no_tune_malloc else tune_malloc()
    set_threads(args.threads)
    info = get_dataset("fashion-mnist")
    x, y = load_split(args.data_dir, "fashion-mnist", "train")
    # A last tutorial batch of one image would stop BatchNorm in training mode (as in the scripts).
    n = min(args.images, len(y))
    n -= n % TUTORIAL_BATCH == 1
    x, y = x[:n], y[:n]
    report = start_report(tuned)
    report.update(images=n, rounds=args.rounds, warmup_steps=args.warmup_steps)
    peaks = report["matmul_peak_gflops"] = matmul_peaks()
    print(peaks_line(peaks))
    report["families"] = {family: measure_family(family, info, x, y, args, peaks)
                          for family in args.family}
    finish_report(report, args.out)


if __name__ == "__main__":
    main()
