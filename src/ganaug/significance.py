"""Significance primitives: a mean with its t-interval, a paired comparison (t-test, Wilcoxon,
effect size) and Holm's step-down correction.

Pure functions on plain numbers: accuracies in, differences out in percentage points (``_pp``).
scipy gives the distributions and tests; Holm is written here (ten lines) because scipy has only
FDR control and statsmodels is not a dependency.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats as sps

CONFIDENCE = 0.95
PP = 100.0  # fraction -> percentage points


def mean_ci(values, confidence: float = CONFIDENCE) -> dict:
    """n, mean, sample std (ddof=1) and the t-distribution CI of the mean; None where undefined."""
    x = np.asarray([v for v in values if v is not None], dtype=float)
    out = {"n": int(x.size), "mean": None, "std": None, "ci_low": None, "ci_high": None}
    if x.size == 0:
        return out
    out["mean"] = float(x.mean())
    if x.size >= 2:
        std = float(x.std(ddof=1))
        half = float(sps.t.ppf(0.5 + confidence / 2, x.size - 1)) * std / math.sqrt(x.size)
        out.update(std=std, ci_low=out["mean"] - half, ci_high=out["mean"] + half)
    return out


def paired_test(treatment, baseline, confidence: float = CONFIDENCE) -> dict:
    """Compare paired scores (fractions, same seed order): difference in pp, CI, t-test, Wilcoxon, d_z.

    Undefined quantities are None: nothing is tested below 2 pairs; with identical non-zero
    differences the t statistic and d_z are infinite, so only Wilcoxon is reported.
    """
    # Rounding removes float noise (0.81 - 0.80 != 0.91 - 0.90) that would fake a spread.
    d = np.round((np.asarray(treatment, float) - np.asarray(baseline, float)) * PP, 9)
    s = mean_ci(d, confidence)
    result = {"n": s["n"], "mean_diff_pp": s["mean"], "ci_low_pp": s["ci_low"],
              "ci_high_pp": s["ci_high"], "t_p": None, "wilcoxon_p": None, "cohen_dz": None}
    if d.size < 2:
        return result
    if not d.any():
        return {**result, "t_p": 1.0, "wilcoxon_p": 1.0, "cohen_dz": 0.0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy's notes on ties and tiny n
        if s["std"] > 0:
            result["t_p"] = finite(sps.ttest_1samp(d, 0.0).pvalue)
            result["cohen_dz"] = s["mean"] / s["std"]
        result["wilcoxon_p"] = finite(sps.wilcoxon(d).pvalue)
    return result


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm step-down adjusted p-values; None entries are not tests and stay None."""
    tested = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    adjusted: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))  # keeps the order monotone
        adjusted[i] = running
    return adjusted


def with_holm(tests: list[dict]) -> list[dict]:
    """``tests`` with Holm-adjusted p-values added (``t_p_holm``, ``wilcoxon_p_holm``), one family
    per test: the correction runs over these tests together and over nothing else."""
    for family in ("t_p", "wilcoxon_p"):
        for t, p in zip(tests, holm([t[family] for t in tests])):
            t[f"{family}_holm"] = p
    return tests


def finite(x):
    """x as a float, or None where it is inf or nan (JSON has neither)."""
    x = float(x)
    return x if math.isfinite(x) else None
