"""Statistics of a study: per-cell summaries over seeds, paired comparisons against the baselines,
what each lever changed, Holm correction, and the headline per real-data fraction (best GAN
variant chosen by validation).

Reads the study's CSV files with the standard library and returns plain, JSON-ready dicts.
Accuracies stay fractions in [0, 1]; differences are percentage points (names ending in `_pp`).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from .errors import UserError
from .runs import atomic_write_json
from .significance import CONFIDENCE, finite, mean_ci, paired_test, with_holm
from .wording import describe_variant, headline_sentence

SCHEMA_VERSION = 1
ALPHA = 0.05  # significance threshold applied to Holm-adjusted p-values

GROUP_KEYS = ("dataset", "arch", "fraction")
VARIANT_KEYS = ("method", "generator", "ratio", "filter", "mode")
CELL_KEYS = GROUP_KEYS + VARIANT_KEYS
BASELINES = ("real", "classical")
GAN_METHODS = ("gan", "gan+classical")
LEVER_ORDER = ("generator", "ratio", "filter", "mode", "classical")
METHOD_ORDER = {"real": 0, "classical": 1, "gan": 2, "gan+classical": 3}
GENERATOR_METRICS = ("fd_domain", "kid_domain", "precision_k3", "recall_k3", "density", "coverage",
                     "gan_test_accuracy", "cas_accuracy", "val_accuracy_gain")
TEXT_COLUMNS = {"study", "dataset", "arch", "method", "generator", "mode", "class", "run_dir",
                "generator_run_dir", "samples"}


# ---------------------------------------------------------------- reading

def read_csv(path: str | Path) -> list[dict]:
    """Rows with numbers parsed; empty or "nan" cells become None. A missing file has no rows."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        with path.open(newline="", encoding="utf-8") as f:
            return [{k: _parse(k, v) for k, v in row.items() if k is not None}
                    for row in csv.DictReader(f)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"cannot read {path} ({exc}); re-run the study with --resume") from None


def _parse(column: str, value: str | None):
    value = (value or "").strip()
    if column in TEXT_COLUMNS:
        return value
    if value == "" or value.lower() == "nan":
        return None
    try:
        number = float(value)
    except ValueError:
        return value  # an extra text column the runner added
    return int(number) if column == "seed" else number


def cell_key(row: dict) -> tuple:
    return (row["dataset"], row["arch"], float(row["fraction"]), row["method"],
            row.get("generator") or "", float(row.get("ratio") or 0.0),
            float(row.get("filter") or 0.0), row.get("mode") or "")


def _sort_key(key: tuple) -> tuple:
    return key[:3] + (METHOD_ORDER.get(key[3], 9), key[3]) + key[4:]


def index_by_cell(rows: list[dict]) -> dict[tuple, dict[int, dict]]:
    """{cell key: {seed: row}}; if a cell-seed was recorded twice (a resumed study) the last row wins."""
    index: dict[tuple, dict[int, dict]] = {}
    for row in rows:
        index.setdefault(cell_key(row), {})[int(row["seed"])] = row
    return dict(sorted(index.items(), key=lambda kv: _sort_key(kv[0])))


# ---------------------------------------------------------------- study tables

def summarize_cells(index: dict[tuple, dict[int, dict]]) -> list[dict]:
    cells = []
    for key, by_seed in index.items():
        rows = [by_seed[s] for s in sorted(by_seed)]
        cells.append({**dict(zip(CELL_KEYS, key)), "n": len(rows), "seeds": sorted(by_seed),
                      **{m: mean_ci([r.get(m) for r in rows]) for m in
                         ("test_accuracy", "test_f1", "val_accuracy")},
                      "seconds_mean": mean_ci([r.get("seconds") for r in rows])["mean"],
                      "n_val": min((int(r["n_val"]) for r in rows if r.get("n_val")), default=None)})
    for group in _groups(cells).values():  # the variant each method would field at this fraction
        for c in group:
            c["selected"] = c is best_by_validation([o for o in group if o["method"] == c["method"]])
    return cells


def best_by_validation(cells: list[dict]) -> dict | None:
    """The cell with the highest mean validation accuracy (test accuracy is never looked at).
    Ties go to the first cell in table order, so the choice is deterministic."""
    def val(c):
        v = c["val_accuracy"]["mean"]
        return -math.inf if v is None else v
    return max(cells, key=val) if cells else None


def ties_with(chosen: dict, cells: list[dict]) -> list[dict]:
    """The other cells whose mean validation accuracy equals the chosen one's: the choice among
    them fell to table order (small validation splits make such ties common)."""
    v = chosen["val_accuracy"]["mean"]
    return [c for c in cells if c is not chosen and v is not None
            and c["val_accuracy"]["mean"] is not None and math.isclose(c["val_accuracy"]["mean"], v, abs_tol=1e-9)]


def _groups(cells: list[dict]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = {}
    for c in cells:
        groups.setdefault(tuple(c[k] for k in GROUP_KEYS), []).append(c)
    return groups


def _key(cell: dict) -> tuple:
    return tuple(cell[k] for k in CELL_KEYS)


def _baseline_key(key: tuple, baseline: str) -> tuple:
    return key[:3] + (baseline, "", 0.0, 0.0, "")


def _paired_values(index, key, other, column):
    seeds = sorted(s for s in set(index[key]) & set(index[other])
                   if index[key][s].get(column) is not None
                   and index[other][s].get(column) is not None)
    return seeds, [index[key][s][column] for s in seeds], [index[other][s][column] for s in seeds]


def compare_cells(index: dict[tuple, dict[int, dict]], cells: list[dict]) -> list[dict]:
    """Every cell against `real` and against `classical` of its (dataset, arch, fraction), paired
    by seed; Holm across all comparisons, separately for the t-test and the Wilcoxon family."""
    comparisons = []
    for cell in cells:
        key = _key(cell)
        for baseline in BASELINES:
            other = _baseline_key(key, baseline)
            if METHOD_ORDER.get(cell["method"], 9) <= METHOD_ORDER[baseline] or other not in index:
                continue
            seeds, a, b = _paired_values(index, key, other, "test_accuracy")
            comparisons.append({**{k: cell[k] for k in CELL_KEYS}, "baseline": baseline,
                                "seeds": seeds, **paired_test(a, b)})
    return with_holm(comparisons)


def _reference(gan_cells: list[dict]) -> dict:
    """The main GAN recipe of a group, from which the levers change one coordinate: method gan,
    no filter, mixing, the family and the ratio most cells use (levers add cells there; ties go to
    the family first in name order and the ratio nearest 1)."""
    def most_common(column, tie):
        values = [c[column] for c in gan_cells]
        return min(set(values), key=lambda v: (-values.count(v), tie(v)))
    return {"method": "gan", "generator": most_common("generator", str),
            "ratio": most_common("ratio", lambda r: abs(math.log(r)) if r > 0 else math.inf),
            "filter": 0.0, "mode": "mix"}


def lever_effects(index: dict[tuple, dict[int, dict]], cells: list[dict]) -> list[dict]:
    """What each lever did: every GAN cell against its neighbour that differs only in one coordinate
    set back to the main recipe (e.g. filter 0.9 against no filter, the rest equal), paired by seed.
    Against a fixed baseline the gap moves by exactly this difference. Holm across all levers."""
    effects = []
    for members in _groups(cells).values():
        gan = [c for c in members if c["method"] in GAN_METHODS]
        if not gan:
            continue
        ref, by_key, found = _reference(gan), {_key(c): c for c in gan}, []
        for cell in gan:
            for k in VARIANT_KEYS:
                if cell[k] == ref[k]:
                    continue
                other = by_key.get(_key({**cell, k: ref[k]}))
                if other is None:
                    continue
                seeds, a, b = _paired_values(index, _key(cell), _key(other), "test_accuracy")
                found.append({**{g: cell[g] for g in GROUP_KEYS},
                                "lever": "classical" if k == "method" else k, "from": ref[k], "to": cell[k],
                                "variant": describe_variant(cell), "versus": describe_variant(other),
                                "seeds": seeds, **paired_test(a, b)})
        effects += sorted(found, key=lambda e: (LEVER_ORDER.index(e["lever"]), e["variant"]))
    return with_holm(effects)


def per_class_change(per_class_rows: list[dict], key: tuple, other: tuple) -> list[dict]:
    """Per class: mean F1 of both cells and their paired difference (pp) over shared seeds."""
    f1: dict[tuple, dict[str, dict[int, float]]] = {}
    classes: list[str] = []
    for row in per_class_rows:
        if row.get("f1") is None:
            continue
        f1.setdefault(cell_key(row), {}).setdefault(row["class"], {})[int(row["seed"])] = row["f1"]
        if row["class"] not in classes:
            classes.append(row["class"])
    out = []
    for name in classes:
        a, b = f1.get(key, {}).get(name, {}), f1.get(other, {}).get(name, {})
        seeds = sorted(set(a) & set(b))
        if not seeds:
            continue
        t = paired_test([a[s] for s in seeds], [b[s] for s in seeds])
        out.append({"class": name, "n": t["n"], "gan_f1_mean": float(np.mean([a[s] for s in seeds])),
                    "baseline_f1_mean": float(np.mean([b[s] for s in seeds])),
                    **{k: t[k] for k in ("mean_diff_pp", "ci_low_pp", "ci_high_pp")}})
    return out


def headlines(cells, comparisons, per_class_rows) -> list[dict]:
    """Per (dataset, arch, fraction): the validation-selected best GAN variant versus the
    validation-selected stronger baseline, with the comparison (and Holm p) from the study family."""
    by_id = {_key(c) + (c["baseline"],): c for c in comparisons}
    groups = _groups(cells)
    qualify = len({g[:2] for g in groups}) > 1
    out = []
    for group, members in groups.items():
        gans = [c for c in members if c["method"] in GAN_METHODS]
        bases = [c for c in members if c["method"] in BASELINES]
        gan, base = best_by_validation(gans), best_by_validation(bases)
        h = {**dict(zip(GROUP_KEYS, group)), "gan": None, "baseline": None, "comparison": None,
             "significant": None, "per_class": [],
             "n_val": min((c["n_val"] for c in members if c.get("n_val")), default=None)}
        if gan:
            h["gan"] = {**{k: gan[k] for k in VARIANT_KEYS}, "description": describe_variant(gan),
                        "val_accuracy_mean": gan["val_accuracy"]["mean"],
                        "test_accuracy_mean": gan["test_accuracy"]["mean"],
                        "tied_with": [describe_variant(c) for c in ties_with(gan, gans)]}
        if base:
            h["baseline"] = {"method": base["method"], "val_accuracy_mean": base["val_accuracy"]["mean"],
                             "test_accuracy_mean": base["test_accuracy"]["mean"],
                             "tied_with": [c["method"] for c in ties_with(base, bases)]}
        if gan and base:
            comp = by_id[_key(gan) + (base["method"],)]
            h["comparison"] = {k: comp[k] for k in ("n", "seeds", "mean_diff_pp", "ci_low_pp", "ci_high_pp",
                                                    "t_p", "t_p_holm", "wilcoxon_p", "wilcoxon_p_holm",
                                                    "cohen_dz")}
            if comp["t_p_holm"] is not None:
                h["significant"] = comp["t_p_holm"] < ALPHA
            h["per_class"] = per_class_change(per_class_rows, _key(gan), _key(base))
        h["sentence"] = headline_sentence(h, ALPHA, qualify)
        out.append(h)
    return out


def summarize_generators(rows: list[dict]) -> list[dict]:
    """Generator quality per (dataset, fraction, generator): mean and std over seeds."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], float(row["fraction"]), row["generator"]), []).append(row)
    out = []
    for (dataset, fraction, generator), members in sorted(groups.items()):
        members.sort(key=lambda r: r["seed"])
        metrics = {}
        for m in GENERATOR_METRICS:
            s = mean_ci([r.get(m) for r in members])
            if s["n"]:
                metrics[m] = {"n": s["n"], "mean": s["mean"], "std": s["std"]}
        out.append({"dataset": dataset, "fraction": fraction, "generator": generator,
                    "n": len(members), "seeds": [r["seed"] for r in members], "metrics": metrics,
                    "seconds_mean": mean_ci([r.get("seconds") for r in members])["mean"],
                    "samples": [{"seed": r["seed"], "path": r["samples"]}
                                for r in members if r.get("samples")]})
    return out


# ---------------------------------------------------------------- entry points

def _design(rows: list[dict]) -> dict:
    """The grid as run: the distinct values of every coordinate (blank ones left out)."""
    def values(column):
        found = {r.get(column) for r in rows} - {None, ""}
        return sorted(found, key=lambda v: (METHOD_ORDER.get(v, 9), v) if column == "method" else v)
    return {c: values(c) for c in ("dataset", "arch", "fraction", "method", "generator", "ratio",
                                   "filter", "mode", "seed")}


def compute_stats(study_dir: str | Path) -> dict:
    """Read summary.csv, per_class.csv and generators.csv of a study folder; return stats.json's dict."""
    study_dir = Path(study_dir)
    summary = read_csv(study_dir / "summary.csv")
    if not summary:
        raise UserError(f"{study_dir / 'summary.csv'} is missing or empty; run or resume the study first")
    index = index_by_cell(summary)
    cells = summarize_cells(index)
    comparisons = compare_cells(index, cells)
    result = {
        "schema": SCHEMA_VERSION,
        "study": summary[0].get("study") or study_dir.name,
        "confidence": CONFIDENCE, "alpha": ALPHA, "metric": "test_accuracy",
        "n_classifiers": sum(len(v) for v in index.values()),
        "design": _design(summary),
        "headlines": headlines(cells, comparisons, read_csv(study_dir / "per_class.csv")),
        "cells": cells,
        "comparisons": comparisons,
        "levers": lever_effects(index, cells),
        "generators": summarize_generators(read_csv(study_dir / "generators.csv")),
        "precision": _precision_counts(summary),
    }
    return _json_ready(result)


def _precision_counts(rows: list[dict]) -> dict[str, int]:
    """How many classifiers trained in each numeric precision (fp32, bf16 autocast); rows of a
    study recorded before ganaug kept it count as "unrecorded"."""
    counts: dict[str, int] = {}
    for r in rows:
        key = r.get("precision") or "unrecorded"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def write_stats(study_dir: str | Path, progress: dict | None = None) -> dict:
    """compute_stats, then write stats.json atomically next to the CSVs. ``progress`` (finished
    and total tasks of the study) is recorded as given; an interim report is marked from it."""
    result = compute_stats(study_dir)
    if progress is not None:
        result["progress"] = progress
    atomic_write_json(Path(study_dir) / "stats.json", result)
    return result


def _json_ready(obj):
    """Plain Python types, NaN and infinities as None (JSON has neither)."""
    if isinstance(obj, dict):
        return {k: _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return finite(obj)
    return obj
