"""`ganaug train-generator`: train a conditional GAN on a run's real training subset, resumably.

The loop is one explicit function over epochs and steps. The real images stay in memory as a
uint8 tensor batched by index. Every epoch ends with an atomic checkpoint (G, D, EMA, optimizers,
RNG states, step, loss history), so a run killed at any moment resumes from its last epoch and
ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel

from .augment import diff_augment
from .checkpoint import CHECKPOINT_NAME, load_checkpoint, restore_rng, rng_state, save_checkpoint
from .data import IMAGE_SIZE, DatasetInfo, prepare
from .errors import UserError
from .fit import model_digest, to_input
from .gan_config import GeneratorConfig, generator_config_from_dict
from .models.generators import GENERATORS, Family, build_generator
from .precision import training_precision
from .progress import progress_bar
from .runs import INCOMPLETE_MARKER, Run, allocate_run, atomic_write_json, read_json, resolve_run, run_label, versions
from .runtime import autocast, ema_model, resolve_device, seed_everything
from .tblog import ScalarLogger


class TrainingDiverged(UserError):
    """Losses became non-finite or the discriminator won outright."""


@dataclass
class GanState:
    g: nn.Module
    d: nn.Module
    ema: AveragedModel | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    generator: torch.Generator  # data order, noise, fake labels, DiffAugment
    epoch: int = 0  # completed epochs
    step: int = 0
    seconds: float = 0.0  # training time so far, across resumes
    history: dict = field(default_factory=lambda: {"d_loss": [], "g_loss": [], "d_real": [], "d_fake": []})

    @property
    def sampler(self) -> nn.Module:
        """The network images are drawn from: the EMA generator when there is one."""
        return self.ema.module if self.ema is not None else self.g

    def to_checkpoint(self, config: dict) -> dict:
        return {"g": self.g.state_dict(), "d": self.d.state_dict(),
                "ema": None if self.ema is None else self.ema.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "rng": rng_state(self.generator), "epoch": self.epoch, "step": self.step,
                "seconds": self.seconds, "history": self.history, "config": config}

    def load_checkpoint(self, ckpt: dict) -> None:
        try:
            self.g.load_state_dict(ckpt["g"])
            self.d.load_state_dict(ckpt["d"])
            if self.ema is not None:
                self.ema.load_state_dict(ckpt["ema"])
            self.opt_g.load_state_dict(ckpt["opt_g"])
            self.opt_d.load_state_dict(ckpt["opt_d"])
            restore_rng(ckpt["rng"], self.generator)
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise UserError(f"the checkpoint does not match this run's configuration "
                            f"({str(exc).splitlines()[0][:160]}); start a new run") from None
        self.epoch, self.step, self.seconds = ckpt["epoch"], ckpt["step"], ckpt["seconds"]
        self.history = ckpt["history"]


def build_state(cfg: GeneratorConfig, info: DatasetInfo, device: torch.device) -> GanState:
    generator = seed_everything(cfg.seed)
    o = cfg.optim
    family = GENERATORS[cfg.arch]
    g = build_generator(cfg.arch, info.num_classes, o.z_dim, o.g_width, o.g_depth).to(device)
    extra = {key: value for key, value in (("twin", bool(o.twin_weight)), ("mbstd", o.d_mbstd),
                                           ("depth", o.d_depth),
                                           ("projection", o.d_projection)) if value}
    d = family.make_d(info.num_classes, o.d_width, o.d_dropout, **extra).to(device)
    if o.channels_last:
        g.to(memory_format=torch.channels_last)
        d.to(memory_format=torch.channels_last)
    ema = ema_model(g, o.ema_decay) if o.ema else None
    opt_g = torch.optim.Adam(g.parameters(), lr=o.lr_g, betas=(o.beta1, o.beta2))
    opt_d = torch.optim.Adam(d.parameters(), lr=o.lr_d, betas=(o.beta1, o.beta2))
    return GanState(g, d, ema, opt_g, opt_d, generator)


def total_epochs(cfg: GeneratorConfig, n: int) -> int:
    return max(cfg.optim.epochs, math.ceil(cfg.optim.min_steps / steps_per_epoch(cfg, n)))


def steps_per_epoch(cfg: GeneratorConfig, n: int) -> int:
    return max(1, n // cfg.optim.batch_size)


# ---------------------------------------------------------------- losses

def d_loss(family: Family, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    if family.loss == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return F.softplus(-real).mean() + F.softplus(fake).mean()  # BCE with logits, labels 1 and 0


def g_loss(family: Family, fake: torch.Tensor) -> torch.Tensor:
    if family.loss == "hinge":
        return -fake.mean()
    return F.softplus(-fake).mean()  # non-saturating


def mode_seeking_loss(fake: torch.Tensor, z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """MSGAN's term: 1 / (mean |G(z1, c) - G(z2, c)| / mean |z1 - z2|) over the pairs
    (i, i + ceil(n / 2)), which share their label (see ``train_step``). Small when different noise
    gives different images."""
    h = (len(z) + 1) // 2
    m = len(z) - h
    ratio = (fake[:m] - fake[h:]).abs().mean() / (z[:m] - z[h:]).abs().mean()
    return 1 / (ratio + eps)


# ---------------------------------------------------------------- the loop

def train_step(state: GanState, family: Family, cfg: GeneratorConfig, real: torch.Tensor,
               real_y: torch.Tensor, num_classes: int, device, precision: str) -> torch.Tensor:
    """One discriminator and one generator update; returns [d_loss, g_loss, D(real), D(fake)]."""
    o = cfg.optim
    gen = state.generator
    b = len(real_y)
    z = torch.randn(b, o.z_dim, generator=gen).to(device)
    if o.mode_seeking:  # pairs (i, i + ceil(b / 2)) share a label, for the mode-seeking term
        half = torch.randint(0, num_classes, ((b + 1) // 2,), generator=gen)
        fake_y = torch.cat([half, half])[:b].to(device)
    else:
        fake_y = torch.randint(0, num_classes, (b,), generator=gen).to(device)

    def aug(x):
        return diff_augment(x, o.diffaug_shift, o.diffaug_cutout, gen) if o.diffaugment else x

    with autocast(device, precision):
        fake = state.g(z, fake_y)
        out_real, cls_real = state.d(aug(real), real_y)
        out_fake, cls_fake = state.d(aug(fake.detach()), fake_y)
        loss_d = d_loss(family, out_real.float(), out_fake.float())
        if family.aux_classifier:
            cls_real, cls_fake = cls_real[:, :num_classes].float(), cls_fake.float()
            loss_d = loss_d + o.aux_weight * (
                F.cross_entropy(cls_real, real_y)
                + o.aux_fake_weight * F.cross_entropy(cls_fake[:, :num_classes], fake_y))
            if o.twin_weight:  # the twin head learns which class a fake was drawn for
                loss_d = loss_d + o.twin_weight * F.cross_entropy(cls_fake[:, num_classes:], fake_y)
    state.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    state.opt_d.step()

    with autocast(device, precision):
        out_g, cls_g = state.d(aug(fake), fake_y)
        loss_g = g_loss(family, out_g.float())
        if family.aux_classifier:
            cls_g = cls_g.float()
            loss_g = loss_g + o.aux_weight * F.cross_entropy(cls_g[:, :num_classes], fake_y)
            if o.twin_weight:
                loss_g = loss_g - o.twin_weight * F.cross_entropy(cls_g[:, num_classes:], fake_y)
        if o.mode_seeking:
            loss_g = loss_g + o.mode_seeking * mode_seeking_loss(fake.float(), z)
    state.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    state.opt_g.step()
    if state.ema is not None:
        state.ema.update_parameters(state.g)
    return torch.stack([loss_d.detach(), loss_g.detach(), out_real.detach().float().mean(),
                        out_fake.detach().float().mean()])


def step_probe(cfg: GeneratorConfig, info: DatasetInfo, device):
    """``training_precision``'s key and step for training ``cfg``'s G and D: one ``train_step``
    of throwaway models on a random real batch of the run's size."""
    state = build_state(cfg, info, device)
    b = cfg.optim.batch_size
    real = to_input(torch.randint(0, 256, (b, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8),
                    cfg.optim.channels_last).to(device)
    real_y = torch.randint(0, info.num_classes, (b,)).to(device)
    family = GENERATORS[cfg.arch]

    def step(precision: str) -> None:
        train_step(state, family, cfg, real, real_y, info.num_classes, device, precision)

    o = cfg.optim
    key = {"step": "generator", "arch": cfg.arch, "layers": model_digest(state.g, state.d),
           "batch": b, "channels_last": o.channels_last, "diffaugment": o.diffaugment,
           "ema": o.ema, "mode_seeking": bool(o.mode_seeking)}
    return key, step


def train_loop(state: GanState, cfg: GeneratorConfig, x: torch.Tensor, y: torch.Tensor,
               num_classes: int, device, precision: str, on_epoch_end, description: str) -> None:
    family = GENERATORS[cfg.arch]
    n = len(y)
    batch = min(cfg.optim.batch_size, n)
    spe = steps_per_epoch(cfg, n)
    epochs = total_epochs(cfg, n)
    x, y = x.to(device), y.to(device)
    bar = progress_bar(total=epochs * spe, desc=description, unit="step")
    bar.update(state.epoch * spe)
    low_d_epochs = 0
    for epoch in range(state.epoch, epochs):
        start = time.perf_counter()
        state.g.train()
        state.d.train()
        order = torch.randperm(n, generator=state.generator).to(device)
        sums = torch.zeros(4, device=device)
        for i in range(spe):
            idx = order[i * batch:(i + 1) * batch]
            real = to_input(x[idx], cfg.optim.channels_last)
            sums += train_step(state, family, cfg, real, y[idx], num_classes, device, precision)
            bar.update()
        means = (sums / spe).tolist()
        kept = (f"the last good checkpoint (epoch {state.epoch}) is kept" if state.epoch
                else "no epoch finished, so there is no checkpoint")
        if not all(math.isfinite(v) for v in means):
            raise TrainingDiverged(f"training diverged in epoch {epoch + 1}: non-finite losses "
                                   f"(D {means[0]}, G {means[1]}); {kept}; try lower learning rates")
        low_d_epochs = low_d_epochs + 1 if means[0] < cfg.collapse_d_loss else 0
        if low_d_epochs >= cfg.collapse_patience:
            raise TrainingDiverged(
                f"training collapsed: the discriminator loss stayed below {cfg.collapse_d_loss} "
                f"for {low_d_epochs} epochs (epoch {epoch + 1}), so the generator gets no "
                f"signal; {kept}; try --diffaugment, more data or a lower discriminator "
                "learning rate")
        for key, value in zip(state.history, means):
            state.history[key].append(value)
        state.epoch, state.step = epoch + 1, state.step + spe
        state.seconds += time.perf_counter() - start
        bar.set_postfix(epoch=f"{epoch + 1}/{epochs}", d_loss=f"{means[0]:.3f}", g_loss=f"{means[1]:.3f}")
        on_epoch_end(state)
    bar.close()


@torch.no_grad()
def sample(model: nn.Module, labels: torch.Tensor, z_dim: int, seed: int, device,
           batch_size: int = 1000) -> torch.Tensor:
    """Images (float [N, 1, 28, 28] in [0, 1], on CPU) for ``labels``, from noise seeded by ``seed``."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(len(labels), z_dim, generator=gen)
    out = [model(z[i:i + batch_size].to(device), labels[i:i + batch_size].to(device)).float().cpu()
           for i in range(0, len(labels), batch_size)]
    return torch.cat(out) if out else torch.empty(0, 1, 28, 28)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[N, 1, 28, 28] in [0, 1] -> uint8 [N, 28, 28], the storage format of real images."""
    return images.squeeze(1).mul(255).round().clamp(0, 255).to(torch.uint8)


def generator_label(cfg: GeneratorConfig) -> str:
    return run_label(GENERATORS[cfg.arch].name, "Original", "Generator")


# ---------------------------------------------------------------- runs

@dataclass
class GeneratorResult:
    run: Run
    metrics: dict


def generator_model_config(cfg: GeneratorConfig, info: DatasetInfo) -> dict:
    """What `models/generators/<run>/config.json` needs to rebuild the sampling network."""
    o = cfg.optim
    return {"kind": "generator", "arch": cfg.arch, "architecture": GENERATORS[cfg.arch].name,
            "dataset": cfg.dataset, "class_names": list(info.class_names),
            "num_classes": info.num_classes, "z_dim": o.z_dim, "g_width": o.g_width,
            "g_depth": o.g_depth,
            "weights": "ema" if o.ema else "generator",
            "onnx": {"inputs": {"z": ["N", o.z_dim], "label": ["N"]}, "output": "image",
                     "output_range": [0.0, 1.0]}}


def train_generator(cfg: GeneratorConfig, data_dir: str | Path, out: str | Path,
                    on_start=None) -> GeneratorResult:
    """A new generator run: train, checkpoint every epoch, then write its folders. ``on_start(run)``
    is called as soon as its folder exists (the study notes where a task trains)."""
    device = resolve_device(cfg.device)
    data = prepare(data_dir, cfg.dataset, cfg.fraction, cfg.seed, cfg.val_fraction)
    precision, precision_choice = training_precision(cfg.precision, device,
                                                     lambda: step_probe(cfg, data.info, device))
    state = build_state(cfg, data.info, device)
    run = allocate_run(out, "generators", generator_label(cfg))
    if on_start is not None:
        on_start(run)
    config = {**cfg.to_dict(), "label": run.name, "data_dir": str(Path(data_dir).resolve()),
              "device_resolved": str(device), "precision_resolved": precision,
              "precision_choice": precision_choice, "counts": data.counts(),
              "epochs_total": total_epochs(cfg, len(data.train_y)),
              "versions": versions()}
    atomic_write_json(run.results / "config.json", config)
    return _train_and_finish(run, cfg, config, state, data, device, precision)


def resume_generator(run_dir: str | Path) -> GeneratorResult:
    """Continue an interrupted run in its own folder from its last checkpoint."""
    run = resolve_run(run_dir, "generators")
    if not (run.results / INCOMPLETE_MARKER).exists() and (run.results / "metrics.json").exists():
        raise UserError(f"{run.results} has already finished; nothing to resume")
    config = read_json(run.results / "config.json")
    cfg = generator_config_from_dict(config)
    device = resolve_device(cfg.device)
    precision = config["precision_resolved"]
    data = prepare(config["data_dir"], cfg.dataset, cfg.fraction, cfg.seed, cfg.val_fraction)
    state = build_state(cfg, data.info, device)
    checkpoint = run.models / CHECKPOINT_NAME
    if checkpoint.exists():
        state.load_checkpoint(load_checkpoint(checkpoint))
    return _train_and_finish(run, cfg, config, state, data, device, precision)


def _train_and_finish(run: Run, cfg: GeneratorConfig, config: dict, state: GanState, data,
                      device, precision: str) -> GeneratorResult:
    from .export import export_generator, save_weights
    from .gen_metrics import evaluate_generator
    from .gen_report import sample_grid, write_generator_reports

    info = data.info
    model_config = {**generator_model_config(cfg, info), "run": config}
    logger = ScalarLogger(run.results / "tensorboard") if cfg.tensorboard else None

    def on_epoch_end(s: GanState) -> None:
        save_checkpoint(run.models / CHECKPOINT_NAME, s.to_checkpoint(config))
        if logger is not None:
            logger.scalars(s.epoch, {k: v[-1] for k, v in s.history.items()})
            grid = sample_grid(s.sampler, info, cfg.optim.z_dim, cfg.seed, device)
            rows = grid.permute(0, 2, 1, 3).reshape(1, info.num_classes * 28, -1)
            logger.images(s.epoch, "samples", rows.float() / 255)

    train_loop(state, cfg, data.train_x, data.train_y, info.num_classes, device, precision,
               on_epoch_end, run.name)
    sampler = state.sampler.eval()
    save_weights(sampler, run.models / "generator.safetensors")
    metrics = {"epochs": state.epoch, "steps": state.step, "seconds": round(state.seconds, 2),
               "train_images_per_second": round(state.step * min(cfg.optim.batch_size,
                                                 len(data.train_y)) / max(state.seconds, 1e-9), 1),
               "final_losses": {k: v[-1] for k, v in state.history.items()},
               "counts": {"real_train": len(data.train_y)}}
    if cfg.export_onnx:
        path = export_generator(sampler, run.models / "generator.onnx", cfg.optim.z_dim)
        from .export import onnx_max_abs_diff

        probe = {"z": torch.randn(16, cfg.optim.z_dim, generator=torch.Generator().manual_seed(0)),
                 "label": torch.arange(16) % info.num_classes}
        metrics["onnx_max_abs_diff"] = onnx_max_abs_diff(sampler, path, probe)
    atomic_write_json(run.models / "config.json", model_config)
    if cfg.evaluate:
        metrics.update(evaluate_generator(sampler, cfg, info, config["data_dir"], device))
    if logger is not None:
        logger.close()
    write_generator_reports(run, cfg, config, state, sampler, metrics, info, device)
    atomic_write_json(run.results / "metrics.json", metrics)
    run.finish()
    return GeneratorResult(run, metrics)
