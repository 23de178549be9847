"""The classifier training loop as explicit functions: build, fit (best epoch by validation), predict.

The data set lives in memory as uint8 tensors; a step gathers a batch by index, scales it to
[0, 1], optionally augments it, and runs the model under bf16 autocast where that is native and
measured faster (``ganaug.precision``).
No per-sample Python, PIL or DataLoader workers are on this path.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, precision_recall_fscore_support
from torch import nn

from .augment import ClassicalAugment
from .checkpoint import restore_rng, rng_state, save_checkpoint
from .config import OptimConfig
from .data import IMAGE_SIZE, DatasetInfo
from .models.classifiers import CLASSIFIERS
from .progress import progress_bar
from .runtime import autocast, ema_model

# Inference batch. Only speed and memory depend on it: on one CPU thread the channels-last
# reference CNN ran 3.6x faster at 128 (with one pass instead of two), and the classifiers' own
# predict 0.9-1.3x, within the noise of a shared machine (benchmarks/bench_eval.py).
EVAL_BATCH = 128
MIN_BATCH = 2  # a trailing batch smaller than this is skipped (BatchNorm needs two images)
MIN_WARMUP_STEPS = 2


def build_classifier(arch: str, info: DatasetInfo, **model_kwargs) -> nn.Module:
    return CLASSIFIERS[arch](num_classes=info.num_classes, mean=info.mean, std=info.std, **model_kwargs)


def to_input(x_uint8: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """uint8 [N, 28, 28] -> float [N, 1, 28, 28] in [0, 1] (the contract's model input)."""
    x = x_uint8.unsqueeze(1).float().div_(255.0)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def model_digest(*models: nn.Module) -> str:
    """A short name for the architectures of ``models`` (their layer listing)."""
    return hashlib.sha256("".join(repr(m) for m in models).encode()).hexdigest()[:16]


def train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               device: torch.device, precision: str, label_smoothing: float):
    """One optimiser step on the batch (x, y); returns its logits and loss."""
    with autocast(device, precision):
        logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return logits, loss


def step_probe(model: nn.Module, optim: OptimConfig, num_classes: int, device: torch.device):
    """``training_precision``'s key and step for training ``model``: one ``train_step`` (the
    step ``fit`` runs) on a random batch of the run's size, on ``model``, which must be a
    throwaway build of the run's architecture (it is trained on noise)."""
    model.to(device).train()
    if optim.channels_last:
        model.to(memory_format=torch.channels_last)
    opt, _ = make_optimizer(model, optim, total_steps=1)
    x = to_input(torch.randint(0, 256, (optim.batch_size, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8),
                 optim.channels_last).to(device)
    y = torch.randint(0, num_classes, (optim.batch_size,)).to(device)

    def step(precision: str) -> None:
        train_step(model, opt, x, y, device, precision, optim.label_smoothing)

    key = {"step": "classifier", "model": type(model).__name__, "layers": model_digest(model),
           "batch": optim.batch_size, "channels_last": optim.channels_last}
    return key, step


def make_optimizer(model: nn.Module, optim: OptimConfig, total_steps: int):
    # No weight decay on biases and normalisation parameters (standard practice).
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": optim.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if optim.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=optim.lr, momentum=optim.momentum, nesterov=True)
    else:
        opt = torch.optim.AdamW(groups, lr=optim.lr)
    # OneCycleLR divides by its warm-up length: a run too short to warm up keeps a constant rate.
    if optim.schedule == "onecycle" and optim.warmup_fraction * total_steps >= MIN_WARMUP_STEPS:
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, optim.lr, total_steps=total_steps,
                                                    pct_start=optim.warmup_fraction)
    elif optim.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total_steps)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    return opt, sched


def epochs_for(optim: OptimConfig, n_train: int) -> int:
    """The configured epochs, raised so that small subsets still get ``min_steps`` updates and
    lowered (to the nearest whole epoch, at least one) so that large sets stay near ``max_steps``."""
    steps_per_epoch = max(1, math.ceil(n_train / optim.batch_size))
    epochs = max(optim.epochs, math.ceil(optim.min_steps / steps_per_epoch))
    if optim.max_steps and epochs * steps_per_epoch > optim.max_steps:
        epochs = max(1, round(optim.max_steps / steps_per_epoch))
    return epochs


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, device: torch.device, channels_last: bool = False,
            batch_size: int = EVAL_BATCH) -> torch.Tensor:
    """Logits (float32, on CPU) for uint8 images, in fp32 so they match the exported ONNX model."""
    model.eval()
    out = [model(to_input(x[i:i + batch_size].to(device), channels_last)).float().cpu()
           for i in range(0, len(x), batch_size)]
    return torch.cat(out) if out else torch.empty(0)


def scores(logits: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Loss and the contract's scores (precision, recall and f1 are macro averages)."""
    pred = logits.argmax(1).numpy()
    true = y.numpy()
    precision, recall, f1, _ = precision_recall_fscore_support(true, pred, average="macro",
                                                               zero_division=0)
    return {"loss": float(F.cross_entropy(logits, y)), "accuracy": float(accuracy_score(true, pred)),
            "precision": float(precision), "recall": float(recall), "f1": float(f1)}


@dataclass
class FitResult:
    history: dict = field(default_factory=lambda: {"train_loss": [], "train_accuracy": [],
                                                   "val_loss": [], "val_accuracy": []})
    best_epoch: int = 0
    epochs: int = 0
    seconds: float = 0.0
    images_per_second: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class EpochCheckpoint:
    """Where ``fit`` saves everything it needs to continue (weights, optimiser, schedule, EMA, best
    epoch so far, history, RNG states) at the end of an epoch, and the state it continues from.

    A save is written at most every ``every_seconds`` (0: after every epoch) and always after the
    last epoch, so a run of many tiny epochs (a 1% subset) does not spend its time writing.
    ``phase`` names which ``fit`` of the run this is (a pretrain-then-fine-tune run has two);
    ``extra`` is stored alongside (the finished phases' results).
    """

    path: Path
    every_seconds: float
    phase: str
    extra: dict = field(default_factory=dict)
    resume: dict | None = None  # a loaded checkpoint of this phase
    last_save: float = field(default_factory=time.monotonic)

    def due(self, last_epoch: bool) -> bool:
        return last_epoch or time.monotonic() - self.last_save >= self.every_seconds

    def save(self, state: dict) -> None:
        save_checkpoint(self.path, {**self.extra, **state, "phase": self.phase})
        self.last_save = time.monotonic()


def fit(model: nn.Module, optim: OptimConfig, train_x: torch.Tensor, train_y: torch.Tensor,
        val_x: torch.Tensor, val_y: torch.Tensor, *, device: torch.device, precision: str,
        generator: torch.Generator, augment: ClassicalAugment | None = None,
        description: str = "train", logger=None, checkpoint: EpochCheckpoint | None = None) -> FitResult:
    """Train ``model`` in place and leave it at the epoch with the best validation accuracy.

    Ties on validation accuracy go to the lower validation loss. With ``optim.ema_decay`` the
    moving average of the weights is what is validated, selected and left in ``model``.
    With ``checkpoint`` the state is saved at epoch ends, and a run continued from
    ``checkpoint.resume`` ends with the same weights as one that was never interrupted.
    Returns the per-epoch history.
    """
    model.to(device)
    if optim.channels_last:
        model.to(memory_format=torch.channels_last)
    train_x, train_y = train_x.to(device), train_y.to(device)
    n = len(train_y)
    epochs = epochs_for(optim, n)
    steps_per_epoch = math.ceil(n / optim.batch_size)
    opt, sched = make_optimizer(model, optim, epochs * steps_per_epoch)
    ema = ema_model(model, optim.ema_decay) if optim.ema_decay else None
    evaluated = model if ema is None else ema.module
    result = FitResult(epochs=epochs)
    best_key, best_state = None, None
    start = time.perf_counter()
    train_seconds = 0.0
    first_epoch = 0
    resume = checkpoint.resume if checkpoint is not None else None
    if resume is not None:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        if ema is not None:
            ema.load_state_dict(resume["ema"])
        best_key, best_state = tuple(resume["best_key"]), resume["best_state"]
        result.history, result.best_epoch = resume["history"], resume["best_epoch"]
        train_seconds, first_epoch = resume["train_seconds"], resume["epoch"]
        start -= resume["seconds"]  # the time spent before the interruption counts too
        restore_rng(resume["rng"], generator)
    bar = progress_bar(total=epochs * steps_per_epoch, desc=description, unit="step",
                       initial=first_epoch * steps_per_epoch)
    for epoch in range(first_epoch, epochs):
        model.train()
        epoch_start = time.perf_counter()
        order = torch.randperm(n, generator=generator).to(device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        for i in range(0, n, optim.batch_size):
            idx = order[i:i + optim.batch_size]
            if len(idx) < MIN_BATCH <= n:  # BatchNorm cannot train on one image; it waits for the next epoch
                break
            x = to_input(train_x[idx], optim.channels_last)
            y = train_y[idx]
            if augment is not None:
                x = augment(x, generator)
            logits, loss = train_step(model, opt, x, y, device, precision, optim.label_smoothing)
            sched.step()
            if ema is not None:
                ema.update_parameters(model)
            loss_sum += loss.detach() * len(idx)
            correct += (logits.argmax(1) == y).sum()
            seen += len(idx)
            bar.update()
        train_seconds += time.perf_counter() - epoch_start
        val = scores(predict(evaluated, val_x, device, optim.channels_last), val_y)
        history = result.history
        history["train_loss"].append(float(loss_sum) / seen)
        history["train_accuracy"].append(float(correct) / seen)
        history["val_loss"].append(val["loss"])
        history["val_accuracy"].append(val["accuracy"])
        key = (val["accuracy"], -val["loss"])
        if best_key is None or key > best_key:
            best_key, result.best_epoch = key, epoch + 1
            best_state = {k: v.detach().clone() for k, v in evaluated.state_dict().items()}
        bar.set_postfix(epoch=f"{epoch + 1}/{epochs}", loss=f"{history['train_loss'][-1]:.3f}",
                        acc=f"{history['train_accuracy'][-1]:.3f}", val_acc=f"{val['accuracy']:.3f}")
        if logger is not None:
            logger.scalars(epoch + 1, {k: v[-1] for k, v in history.items()})
        if checkpoint is not None and checkpoint.due(epoch + 1 == epochs):
            checkpoint.save({
                "epoch": epoch + 1, "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "ema": None if ema is None else ema.state_dict(),
                "best_key": list(best_key), "best_state": best_state, "best_epoch": result.best_epoch,
                "history": history, "train_seconds": train_seconds,
                "seconds": time.perf_counter() - start, "rng": rng_state(generator)})
    bar.close()
    model.load_state_dict(best_state)
    result.seconds = time.perf_counter() - start
    result.images_per_second = epochs * n / max(train_seconds, 1e-9)
    return result


def per_class_f1(logits: torch.Tensor, y: torch.Tensor, class_names) -> dict[str, float]:
    _, _, f1, _ = precision_recall_fscore_support(y.numpy(), logits.argmax(1).numpy(),
                                                  labels=list(range(len(class_names))),
                                                  zero_division=0)
    return {name: float(v) for name, v in zip(class_names, f1)}


def per_class_counts(y: torch.Tensor, num_classes: int) -> list[int]:
    return np.bincount(y.numpy(), minlength=num_classes).tolist()
