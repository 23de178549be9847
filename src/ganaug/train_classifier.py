"""`ganaug train-classifier`: one classifier run, from data to its self-explaining folders."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from sklearn.metrics import classification_report

from . import plots
from .augment import ClassicalAugment
from .backbone import init_transfer
from .checkpoint import CHECKPOINT_NAME, load_checkpoint
from .config import ClassifierConfig, from_dict
from .data import RealData, prepare
from .errors import UserError
from .export import export_classifier, onnx_max_abs_diff, save_weights
from .fit import (EpochCheckpoint, FitResult, build_classifier, fit, per_class_counts, per_class_f1,
                  predict, scores, step_probe)
from .models.classifiers import CLASSIFIER_NAMES
from .models.layers import count_parameters
from .precision import training_precision
from .runs import (INCOMPLETE_MARKER, Run, allocate_run, atomic_write_json, atomic_write_text, read_json,
                   resolve_run, run_label, versions)
from .runtime import resolve_device, seed_everything
from .tblog import ScalarLogger

PARITY_BATCH = 64  # images checked against onnxruntime right after export


@dataclass
class ClassifierResult:
    run: Run
    metrics: dict


def model_kwargs(cfg: ClassifierConfig) -> dict:
    return {**(cfg.transfer.model_kwargs() if cfg.arch == "transfer" else {}), "flip_tta": cfg.flip_tta}


def classifier_label(cfg: ClassifierConfig) -> str:
    return run_label(CLASSIFIER_NAMES[cfg.arch], "Augmented" if cfg.augmented else "Original",
                     "Classifier")


def training_set(cfg: ClassifierConfig, data: RealData, device: torch.device, precision: str,
                 out: Path):
    """Real training images, plus synthetic ones when the config asks for them."""
    if not cfg.augmented:
        return data.train_x, data.train_y, None
    from .synthetic import mix_synthetic

    return mix_synthetic(cfg, data, device, precision, out)


def train_classifier(cfg: ClassifierConfig, data_dir: str | Path, out: str | Path,
                     on_start=None) -> ClassifierResult:
    """A new classifier run. ``on_start(run)`` is called as soon as its folder exists (the study
    notes where a task trains, to continue it there after a kill)."""
    out = Path(out)
    device = resolve_device(cfg.device)
    data = prepare(data_dir, cfg.dataset, cfg.fraction, cfg.seed, cfg.val_fraction)
    precision, precision_choice = training_precision(cfg.precision, device, lambda: step_probe(
        build_classifier(cfg.arch, data.info, **model_kwargs(cfg)), cfg.optim, data.info.num_classes,
        device))
    train_x, train_y, synthetic = training_set(cfg, data, device, precision, out)
    backbone = init_transfer(cfg, data_dir, out, device, precision) if cfg.arch == "transfer" else None

    run = allocate_run(out, "classifiers", classifier_label(cfg))
    if on_start is not None:
        on_start(run)
    config = {**cfg.to_dict(), "label": run.name, "data_dir": str(Path(data_dir).resolve()),
              "device_resolved": str(device), "precision_resolved": precision,
              "precision_choice": precision_choice,
              "counts": {**data.counts(), "synthetic": 0 if synthetic is None else synthetic["count"]},
              "train_per_class": per_class_counts(data.train_y, data.info.num_classes),
              "synthetic": synthetic, "backbone": None if backbone is None else backbone.describe(),
              "versions": versions()}
    atomic_write_json(run.results / "config.json", config)
    return _train_and_finish(run, cfg, config, data, train_x, train_y, backbone, device, precision, None)


def resume_classifier(run_dir: str | Path) -> ClassifierResult:
    """Continue an interrupted run in its own folder from its last checkpoint (from the start
    if it was stopped before its first one): same data, same seed, so the same final weights."""
    run = resolve_run(run_dir, "classifiers")
    if not (run.results / INCOMPLETE_MARKER).exists() and (run.results / "metrics.json").exists():
        raise UserError(f"{run.results} has already finished; nothing to resume")
    if not (run.results / "config.json").is_file():
        raise UserError(f"{run.results} has no config.json; it cannot be resumed (start a new run)")
    config = read_json(run.results / "config.json")
    cfg = from_dict(ClassifierConfig, config)
    device = resolve_device(cfg.device)
    precision = config["precision_resolved"]
    out = run.results.parents[2]
    data = prepare(config["data_dir"], cfg.dataset, cfg.fraction, cfg.seed, cfg.val_fraction)
    train_x, train_y, _ = training_set(cfg, data, device, precision, out)
    path = run.models / CHECKPOINT_NAME
    state = load_checkpoint(path) if path.exists() else None
    backbone = None
    if state is None and cfg.arch == "transfer":  # the checkpoint holds the fine-tuned weights otherwise
        backbone = init_transfer(cfg, config["data_dir"], out, device, precision)
    return _train_and_finish(run, cfg, config, data, train_x, train_y, backbone, device, precision, state)


def _train_and_finish(run: Run, cfg: ClassifierConfig, config: dict, data: RealData, train_x, train_y,
                      backbone, device, precision: str, state: dict | None) -> ClassifierResult:
    generator = seed_everything(cfg.seed)
    model = build_classifier(cfg.arch, data.info, **model_kwargs(cfg))
    if backbone is not None:
        model.load_state_dict(backbone.state, strict=False)

    logger = ScalarLogger(run.results / "tensorboard") if cfg.tensorboard else None
    augment = ClassicalAugment(cfg.augment) if cfg.classical_aug else None
    path = run.models / CHECKPOINT_NAME
    pretrain = None
    if cfg.augmented and cfg.synthetic_mode == "pretrain":
        # Pretrain on synthetic images only (best epoch by the real validation split), then
        # fine-tune on the real training images below.
        if state is not None and state["phase"] == "train":
            pretrain = FitResult(**state["pretrain"])
        else:
            pretrain = fit(model, cfg.optim, train_x, train_y, data.val_x, data.val_y, device=device,
                           precision=precision, generator=generator, augment=augment,
                           description=f"{run.name} (synthetic pretraining)",
                           checkpoint=EpochCheckpoint(path, cfg.checkpoint_seconds, "pretrain", resume=state))
            state = None
        train_x, train_y = data.train_x, data.train_y
    extra = {} if pretrain is None else {"pretrain": pretrain.to_dict()}
    result = fit(model, cfg.optim, train_x, train_y, data.val_x, data.val_y, device=device,
                 precision=precision, generator=generator, augment=augment,
                 description=run.name, logger=logger,
                 checkpoint=EpochCheckpoint(path, cfg.checkpoint_seconds, "train", extra, resume=state))

    evaluation_start = time.perf_counter()
    channels_last = cfg.optim.channels_last
    logits = {split: predict(model, x, device, channels_last)
              for split, x in (("train", data.train_x), ("val", data.val_x), ("test", data.test_x))}
    truth = {"train": data.train_y, "val": data.val_y, "test": data.test_y}
    metrics = {split: scores(logits[split], truth[split]) for split in logits}
    if cfg.flip_tta:  # what the mirror-image average adds, on the test split
        model.flip_tta = False
        metrics["test_single_view"] = scores(predict(model, data.test_x, device, channels_last), data.test_y)
        model.flip_tta = True
    metrics["history"] = result.history
    # training (both phases, across resumes) and evaluation
    metrics["seconds"] = round((pretrain.seconds if pretrain else 0.0) + result.seconds
                               + time.perf_counter() - evaluation_start, 2)
    metrics["best_epoch"] = result.best_epoch
    metrics["epochs"] = result.epochs
    metrics["train_images_per_second"] = round(result.images_per_second, 1)
    metrics["test_per_class_f1"] = per_class_f1(logits["test"], data.test_y, data.info.class_names)
    if pretrain is not None:
        metrics["pretrain_history"] = pretrain.history
        metrics["pretrain_epochs"] = pretrain.epochs
    if logger is not None:
        logger.scalars(result.epochs + 1, {f"test_{k}": v for k, v in metrics["test"].items()})
        logger.close()

    model.cpu()
    save_weights(model, run.models / "model.safetensors")
    if cfg.export_onnx:
        onnx_path = export_classifier(model, run.models / "model.onnx")
        probe = data.test_x[:PARITY_BATCH].unsqueeze(1).float() / 255
        metrics["onnx_max_abs_diff"] = onnx_max_abs_diff(model, onnx_path, {"image": probe})
    atomic_write_json(run.models / "config.json", {
        "kind": "classifier", "arch": cfg.arch, "architecture": CLASSIFIER_NAMES[cfg.arch],
        "dataset": cfg.dataset, "class_names": list(data.info.class_names),
        "num_classes": data.info.num_classes, "mean": data.info.mean, "std": data.info.std,
        "model_kwargs": model_kwargs(cfg), "onnx": {"input": "image", "output": "logits",
                                                   "input_range": [0.0, 1.0]},
        "test_accuracy": metrics["test"]["accuracy"], "run": config})
    write_reports(run, cfg, config, model, metrics, logits["test"], data, result)
    atomic_write_json(run.results / "metrics.json", metrics)
    path.unlink(missing_ok=True)  # only an unfinished run needs it; the weights are saved above
    run.finish()
    return ClassifierResult(run, metrics)


def write_reports(run: Run, cfg: ClassifierConfig, config: dict, model, metrics: dict,
                  test_logits: torch.Tensor, data: RealData, result) -> None:
    names = list(data.info.class_names)
    y_pred = test_logits.argmax(1).numpy()
    report = classification_report(data.test_y.numpy(), y_pred, labels=list(range(len(names))),
                                   target_names=names, digits=4, zero_division=0)
    atomic_write_text(run.results / "classification_report.txt",
                      f"{run.name}: test split ({len(y_pred)} images)\n\n{report}")
    ext = cfg.plot_format
    plots.confusion_matrix(data.test_y.numpy(), y_pred, names, run.results / f"confusion_matrix.{ext}",
                           f"{run.name}: test accuracy {metrics['test']['accuracy']:.4f}")
    plots.curves(metrics["history"], result.best_epoch, run.results / f"curves.{ext}", run.name)
    atomic_write_text(run.results / "model_info.txt", model_info(run, cfg, config, model, metrics))


def model_info(run: Run, cfg: ClassifierConfig, config: dict, model, metrics: dict) -> str:
    o = cfg.optim
    counts = config["counts"]
    params = count_parameters(model)
    lines = [
        f"Run: {run.name}",
        f"Architecture: {CLASSIFIER_NAMES[cfg.arch]} (--arch {cfg.arch})",
        f"Parameters: {params:,}",
        f"Batch size: {o.batch_size}",
        f"Epochs: {metrics['epochs']} (configured {o.epochs}, at least {o.min_steps} steps); "
        f"best epoch by validation accuracy: {metrics['best_epoch']}",
        f"Optimizer: {o.optimizer} (peak lr {o.lr}, weight decay {o.weight_decay} on weights only"
        + (f", momentum {o.momentum}" if o.optimizer == "sgd" else "") + ")",
        f"Learning-rate schedule: {o.schedule}"
        + (f" (warm-up {o.warmup_fraction:.0%} of steps)" if o.schedule == "onecycle" else ""),
        f"Label smoothing: {o.label_smoothing}",
        f"Precision: {config['precision_resolved']} on {config['device_resolved']}"
        + (", channels-last" if o.channels_last else ""),
        f"Data: {cfg.dataset}, fraction {cfg.fraction}; train {counts['train']}, "
        f"validation {counts['val']}, test {counts['test']}, synthetic {counts['synthetic']}",
        f"Classical augmentation: {cfg.augment if cfg.classical_aug else 'off'}",
        "Evaluation: " + ("mean logits of each image and its mirror image (flip test-time "
                          f"augmentation; one view: test accuracy {metrics['test_single_view']['accuracy']:.4f})"
                          if cfg.flip_tta else "one view per image"),
        f"Seed: {cfg.seed}",
        f"Training time: {metrics['seconds']:.1f} s ({metrics['train_images_per_second']:.0f} images/s)",
        f"Test accuracy: {metrics['test']['accuracy']:.4f}",
        "",
        "Layers:",
        str(model),
    ]
    if config["backbone"]:
        lines[2:2] = [f"Backbone: {config['backbone']}"]
    return "\n".join(lines) + "\n"
