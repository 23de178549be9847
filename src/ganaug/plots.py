"""Every figure ganaug draws, in one place. Files are written atomically in the run's plot format."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402

from .runs import atomic_save  # noqa: E402

DPI = 120


def save(fig, path: str | Path) -> Path:
    path = Path(path)
    atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=DPI, bbox_inches="tight",
                                              format=path.suffix.lstrip(".")))
    plt.close(fig)
    return path


def confusion_matrix(y_true, y_pred, class_names, path, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(8, 7))
    ConfusionMatrixDisplay.from_predictions(
        y_true, y_pred, labels=list(range(len(class_names))), display_labels=class_names,
        ax=ax, cmap="Blues", colorbar=False, xticks_rotation=45)
    ax.set_title(title)
    return save(fig, path)


def curves(history: dict, best_epoch: int, path, title: str) -> Path:
    epochs = np.arange(1, len(history["train_loss"]) + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, name in ((ax_loss, "loss", "loss"), (ax_acc, "accuracy", "accuracy")):
        ax.plot(epochs, history[f"train_{key}"], label="train")
        ax.plot(epochs, history[f"val_{key}"], label="validation")
        ax.axvline(best_epoch, color="grey", linestyle=":", label=f"best epoch ({best_epoch})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return save(fig, path)


def image_grid(images: np.ndarray, row_labels, path, title: str) -> Path:
    """images: uint8 or float [rows, cols, 28, 28]; one labelled row per class."""
    rows, cols = images.shape[:2]
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.9 + 1.6, rows * 0.9 + 0.6), squeeze=False)
    for r in range(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.imshow(images[r, c], cmap="gray", vmin=0, vmax=255 if images.dtype == np.uint8 else 1)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
        axes[r][0].set_ylabel(row_labels[r], rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(title)
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return save(fig, path)


def losses(history: dict[str, list[float]], path, title: str, xlabel: str = "epoch") -> Path:
    """One line per named series (e.g. generator and discriminator loss)."""
    fig, ax = plt.subplots(figsize=(8, 4))
    for name, values in history.items():
        ax.plot(np.arange(1, len(values) + 1), values, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    return save(fig, path)


# ---- study
# Figures of a study, drawn from the dict that ganaug.stats.compute_stats returns. Each returns
# None (and writes nothing) when the study has no data for it, e.g. no GAN method was trained.

STUDY_METHOD_COLOURS = {"real": "tab:gray", "classical": "tab:blue", "gan": "tab:orange",
                        "gan+classical": "tab:green"}
STUDY_GENERATOR_METRICS = (("fd_domain", "FD, reference-network features (lower is better)"),
                           ("recall_k3", "recall (k = 3)"), ("coverage", "coverage"),
                           ("gan_test_accuracy", "reference net accuracy on generated"),
                           ("cas_accuracy", "CAS accuracy (trained on generated only)"))


def _study_panels(count: int, width: float = 6.0, height: float = 4.2):
    fig, axes = plt.subplots(1, count, figsize=(width * count, height), squeeze=False)
    return fig, list(axes[0])


def _fraction_axis(ax, fractions) -> None:
    """Log-scaled x axis labelled in percent of the labelled training data."""
    ticks = sorted(set(fractions))
    ax.set_xscale("log")
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{f * 100:g}%" for f in ticks])
    ax.minorticks_off()
    ax.set_xlabel("real training data used")
    ax.grid(alpha=0.3)


def _ci_or_mean(summary: dict, scale: float = 100.0) -> tuple[float, float, float]:
    mean = summary["mean"] * scale
    low = summary["ci_low"] * scale if summary["ci_low"] is not None else mean
    high = summary["ci_high"] * scale if summary["ci_high"] is not None else mean
    return mean, low, high


def study_accuracy_vs_fraction(stats: dict, path) -> Path | None:
    """Test accuracy per method with 95% CI bands; GAN methods show their validation-selected variant."""
    cells = [c for c in stats["cells"] if c.get("selected") and c["test_accuracy"]["mean"] is not None]
    groups = sorted({(c["dataset"], c["arch"]) for c in cells})
    if not groups:
        return None
    fig, axes = _study_panels(len(groups))
    for ax, group in zip(axes, groups):
        mine = [c for c in cells if (c["dataset"], c["arch"]) == group]
        order = list(STUDY_METHOD_COLOURS)
        for method in sorted({c["method"] for c in mine},
                             key=lambda m: (order.index(m) if m in order else len(order), m)):
            points = sorted((c for c in mine if c["method"] == method), key=lambda c: c["fraction"])
            x = [c["fraction"] for c in points]
            mean, low, high = zip(*(_ci_or_mean(c["test_accuracy"]) for c in points))
            colour = STUDY_METHOD_COLOURS.get(method)
            label = method + (" (best variant by validation)" if method.startswith("gan") else "")
            ax.plot(x, mean, marker="o", color=colour, label=label)
            ax.fill_between(x, low, high, color=colour, alpha=0.18, linewidth=0)
        _fraction_axis(ax, [c["fraction"] for c in mine])
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{group[0]}, {group[1]}: mean and 95% CI over seeds")
        ax.legend(fontsize=8)
    return save(fig, path)


def study_gain_vs_ratio(stats: dict, path) -> Path | None:
    """Test-accuracy difference to real-only training (pp, mean and 95% CI) against the synthetic ratio."""
    comps = [c for c in stats["comparisons"] if c["baseline"] == "real"
             and c["method"].startswith("gan") and c["mean_diff_pp"] is not None]
    groups = sorted({(c["dataset"], c["arch"]) for c in comps})
    if not groups:
        return None
    fig, axes = _study_panels(len(groups))
    for ax, group in zip(axes, groups):
        mine = [c for c in comps if (c["dataset"], c["arch"]) == group]
        lines = sorted({(c["fraction"], c["generator"], c["method"], c["filter"], c["mode"]) for c in mine})
        for i, line in enumerate(lines):
            points = sorted((c for c in mine if (c["fraction"], c["generator"], c["method"],
                                                 c["filter"], c["mode"]) == line), key=lambda c: c["ratio"])
            shift = 2 ** (0.04 * (i - (len(lines) - 1) / 2))  # side by side, so error bars do not overlap
            x = [c["ratio"] * shift for c in points]
            y = [c["mean_diff_pp"] for c in points]
            err = [[c["mean_diff_pp"] - (c["ci_low_pp"] if c["ci_low_pp"] is not None else c["mean_diff_pp"])
                    for c in points],
                   [(c["ci_high_pp"] if c["ci_high_pp"] is not None else c["mean_diff_pp"]) - c["mean_diff_pp"]
                    for c in points]]
            fraction, generator, method, filt, mode = line
            label = f"{fraction * 100:g}%: {generator}" + (" + classical" if method == "gan+classical" else "")
            label += (f", filter {filt:g}" if filt else "") + (f", {mode}" if mode and mode != "mix" else "")
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=label)
        ratios = sorted({c["ratio"] for c in mine})
        ax.set_xscale("log", base=2)
        ax.set_xticks(ratios)
        ax.set_xticklabels([f"{r:g}" for r in ratios])
        ax.minorticks_off()
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xlabel("synthetic images per real image")
        ax.set_ylabel("test accuracy minus real-only (pp)")
        ax.set_title(f"{group[0]}, {group[1]}: gain over real data only")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save(fig, path)


def study_per_class_f1_change(stats: dict, path) -> Path | None:
    """Per-class test F1 of the best GAN variant minus the stronger baseline (pp, 95% CI), per fraction."""
    heads = [h for h in stats["headlines"] if h.get("per_class")]
    groups = sorted({(h["dataset"], h["arch"]) for h in heads})
    if not groups:
        return None
    classes = list(dict.fromkeys(row["class"] for h in heads for row in h["per_class"]))
    fig, axes = _study_panels(len(groups), width=6.5, height=0.45 * len(classes) + 1.8)
    for ax, group in zip(axes, groups):
        mine = sorted((h for h in heads if (h["dataset"], h["arch"]) == group), key=lambda h: h["fraction"])
        height = 0.8 / len(mine)
        for i, h in enumerate(mine):
            rows = {r["class"]: r for r in h["per_class"]}
            y = np.arange(len(classes)) + (i - (len(mine) - 1) / 2) * height
            diff = [rows[c]["mean_diff_pp"] if c in rows else np.nan for c in classes]
            err = [[(d - rows[c]["ci_low_pp"]) if c in rows and rows[c]["ci_low_pp"] is not None else 0
                    for c, d in zip(classes, diff)],
                   [(rows[c]["ci_high_pp"] - d) if c in rows and rows[c]["ci_high_pp"] is not None else 0
                    for c, d in zip(classes, diff)]]
            ax.barh(y, diff, height=height, xerr=err, capsize=2,
                    label=f"{h['fraction'] * 100:g}%: {h['gan']['description']} vs {h['baseline']['method']}")
        ax.set_yticks(np.arange(len(classes)))
        ax.set_yticklabels(classes)
        ax.invert_yaxis()
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_xlabel("F1 change (pp)")
        ax.set_title(f"{group[0]}, {group[1]}: per-class F1, best GAN minus stronger baseline")
        ax.grid(axis="x", alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1))  # below: bars fill the axes
    return save(fig, path)


def study_generator_metrics(stats: dict, path) -> Path | None:
    """Generator quality per real-data fraction (mean ± std over seeds), one panel per metric."""
    gens = stats["generators"]
    metrics = [(m, title) for m, title in STUDY_GENERATOR_METRICS
               if any(g["metrics"].get(m, {}).get("mean") is not None for g in gens)]
    if not metrics:
        return None
    fig, axes = _study_panels(len(metrics), width=4.2, height=3.6)
    lines = sorted({(g["dataset"], g["generator"]) for g in gens})
    for ax, (metric, title) in zip(axes, metrics):
        for line in lines:
            points = sorted((g for g in gens if (g["dataset"], g["generator"]) == line
                             and g["metrics"].get(metric, {}).get("mean") is not None),
                            key=lambda g: g["fraction"])
            if points:
                ax.errorbar([g["fraction"] for g in points], [g["metrics"][metric]["mean"] for g in points],
                            yerr=[g["metrics"][metric]["std"] or 0 for g in points], marker="o", capsize=3,
                            label=f"{line[1]} ({line[0]})" if len({d for d, _ in lines}) > 1 else line[1])
        _fraction_axis(ax, [g["fraction"] for g in gens])
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    return save(fig, path)
