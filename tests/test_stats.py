"""ganaug.significance and ganaug.stats against scipy and hand computations, on small hand-made (fabricated) paired data."""

from __future__ import annotations

import csv
import json
import math
import warnings

import numpy as np
import pytest
from scipy import stats as sps

from ganaug import significance, stats, wording
from ganaug.errors import UserError

SUMMARY_COLUMNS = ["study", "dataset", "arch", "fraction", "seed", "method", "generator", "ratio",
                   "filter", "mode", "test_accuracy", "test_f1", "test_precision", "test_recall",
                   "val_accuracy", "n_val", "seconds", "run_dir", "generator_run_dir"]


def no_warnings(fn, *args):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn(*args)
    assert not caught, [str(w.message) for w in caught]
    return result


def row(fraction, seed, method, test, val, generator="", ratio=0, filter=0, mode="", n_val=""):
    return {"study": "t", "dataset": "fashion-mnist", "arch": "cnn", "fraction": fraction, "seed": seed,
            "method": method, "generator": generator, "ratio": ratio, "filter": filter, "mode": mode,
            "test_accuracy": test, "test_f1": test - 0.01, "test_precision": test, "test_recall": test,
            "val_accuracy": val, "n_val": n_val, "seconds": 1.0, "run_dir": f"runs/{method}{seed}", "generator_run_dir": ""}


def write_summary(folder, rows):
    with open(folder / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return folder


# ---------------------------------------------------------------- primitives

def test_paired_test_matches_scipy():
    a = [0.812, 0.797, 0.805, 0.821, 0.790, 0.808]
    b = [0.801, 0.799, 0.791, 0.806, 0.785, 0.800]
    got = no_warnings(significance.paired_test, a, b)
    d = np.subtract(a, b)
    assert got["n"] == 6
    assert got["mean_diff_pp"] == pytest.approx(100 * d.mean())
    assert got["t_p"] == pytest.approx(sps.ttest_rel(a, b).pvalue, rel=1e-9)
    assert got["wilcoxon_p"] == pytest.approx(sps.wilcoxon(a, b).pvalue, rel=1e-9)
    assert got["cohen_dz"] == pytest.approx(d.mean() / d.std(ddof=1))


def test_confidence_interval_by_hand():
    # differences 1, 2, 3, 4 pp: mean 2.5, sd sqrt(5/3), t(0.975, df 3) = 3.182446 from the table.
    got = significance.paired_test([0.51, 0.52, 0.53, 0.54], [0.50, 0.50, 0.50, 0.50])
    half = 3.182446 * math.sqrt(5 / 3) / 2
    assert got["mean_diff_pp"] == pytest.approx(2.5)
    assert got["ci_low_pp"] == pytest.approx(2.5 - half, abs=1e-5)
    assert got["ci_high_pp"] == pytest.approx(2.5 + half, abs=1e-5)
    assert got["cohen_dz"] == pytest.approx(2.5 / math.sqrt(5 / 3))
    cell = significance.mean_ci([0.2, 0.4])  # mean 0.3, sd sqrt(0.02), t(0.975, df 1) = 12.7062
    assert cell["std"] == pytest.approx(math.sqrt(0.02))
    assert cell["ci_high"] == pytest.approx(0.3 + 12.7062 * math.sqrt(0.02) / math.sqrt(2), abs=1e-4)


def test_holm_textbook_example():
    # Wikipedia's example (H1..H4): sorted p 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1
    # = 0.02, 0.03, 0.06, 0.04; step-down keeps them monotone, so H2 gets 0.06, not 0.04.
    assert significance.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # untested comparisons (None) neither count towards m nor get a p-value
    assert significance.holm([None, 0.01, 0.6, 0.4]) == [None, pytest.approx(0.03), pytest.approx(0.8),
                                                  pytest.approx(0.8)]
    assert significance.holm([0.6, 0.7]) == [1.0, 1.0]  # capped at 1
    assert significance.holm([]) == []


@pytest.mark.parametrize("a, b", [([0.8], [0.7]), ([], [])])
def test_fewer_than_two_pairs_are_not_tested(a, b):
    got = no_warnings(significance.paired_test, a, b)
    assert got["t_p"] is None and got["wilcoxon_p"] is None and got["ci_low_pp"] is None
    assert got["n"] == len(a)


def test_all_zero_differences_mean_no_evidence():
    got = no_warnings(significance.paired_test, [0.8, 0.7, 0.9], [0.8, 0.7, 0.9])
    assert (got["t_p"], got["wilcoxon_p"], got["mean_diff_pp"], got["cohen_dz"]) == (1.0, 1.0, 0.0, 0.0)


def test_identical_nonzero_differences_leave_only_wilcoxon():
    # 0.81 - 0.80 and 0.91 - 0.90 differ in floating point; they must count as the same 1 pp.
    got = no_warnings(significance.paired_test, [0.81, 0.91, 0.71], [0.80, 0.90, 0.70])
    assert got["t_p"] is None and got["cohen_dz"] is None
    assert got["mean_diff_pp"] == pytest.approx(1.0)
    assert got["wilcoxon_p"] == pytest.approx(2 / 2 ** 3)  # all signs agree: the exact minimum


def test_ties_and_zeros_match_scipy_without_warnings():
    a, b = [0.80, 0.81, 0.82, 0.80, 0.83], [0.80, 0.80, 0.81, 0.79, 0.81]  # one zero, tied |d|
    got = no_warnings(significance.paired_test, a, b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = sps.wilcoxon(np.round(np.subtract(a, b) * 100, 9)).pvalue
    assert got["wilcoxon_p"] == pytest.approx(expected)


@pytest.mark.parametrize("p, text", [(None, "n/a"), (0.0004, "< 0.001"), (0.0545, "0.0545"),
                                     (0.25, "0.25"), (1.0, "1.00")])
def test_format_p(p, text):
    assert wording.format_p(p) == text


# ---------------------------------------------------------------- study level

def test_headline_selects_by_validation_not_test(tmp_path):
    rows = []
    for seed, noise in enumerate((0.000, 0.004, -0.003, 0.002, -0.001)):
        # real beats classical on test, classical wins on validation -> classical is the baseline
        rows.append(row(0.01, seed, "real", 0.760 + noise, 0.700 + noise))
        rows.append(row(0.01, seed, "classical", 0.750 + noise, 0.720 + noise))
        # "wgan" is best on test, "sngan" on validation -> sngan must be the headline
        rows.append(row(0.01, seed, "gan", 0.770 + noise, 0.740 + noise, "sngan", 1, 0, "mix"))
        rows.append(row(0.01, seed, "gan", 0.800 + noise, 0.730 + noise, "wgan", 1, 0, "mix"))
    result = stats.compute_stats(write_summary(tmp_path, rows))
    (head,) = result["headlines"]
    assert head["gan"]["generator"] == "sngan"
    assert head["baseline"]["method"] == "classical"
    assert head["comparison"]["mean_diff_pp"] == pytest.approx(2.0)
    selected = [c["generator"] for c in result["cells"] if c["method"] == "gan" and c["selected"]]
    assert selected == ["sngan"]
    # the same noise on both sides: a constant difference, so only Wilcoxon is defined
    assert head["comparison"]["t_p"] is None
    assert "sngan, ratio 1, mix" in head["sentence"] and "classical augmentation" in head["sentence"]


def test_comparisons_are_paired_over_shared_seeds_with_holm_over_the_study(tmp_path):
    rows = [row(0.1, s, "real", 0.85 + 0.001 * s, 0.84) for s in (0, 1, 2, 3)]
    rows += [row(0.1, s, "classical", 0.86 + 0.002 * s, 0.85) for s in (0, 1, 2, 3)]
    rows += [row(0.1, s, "gan", 0.87 + 0.0015 * s * s, 0.86, "sngan", 2, 0.5, "pretrain") for s in (0, 2, 3)]
    rows.append(row(0.1, 1, "gan", 0.99, 0.99, "other", 1, 0, "mix"))  # one seed only
    result = stats.compute_stats(write_summary(tmp_path, rows))
    comps = {(c["method"], c["generator"], c["baseline"]): c for c in result["comparisons"]}
    assert set(comps) == {("classical", "", "real"), ("gan", "sngan", "real"), ("gan", "sngan", "classical"),
                          ("gan", "other", "real"), ("gan", "other", "classical")}
    sngan = comps[("gan", "sngan", "real")]
    assert sngan["seeds"] == [0, 2, 3] and sngan["n"] == 3
    a = [0.87, 0.87 + 0.006, 0.87 + 0.0135]
    b = [0.85, 0.852, 0.853]
    assert sngan["t_p"] == pytest.approx(sps.ttest_rel(a, b).pvalue)
    tested = [c for c in result["comparisons"] if c["t_p"] is not None]
    expected = significance.holm([c["t_p"] for c in tested])
    assert [c["t_p_holm"] for c in tested] == pytest.approx(expected)
    assert len(tested) == 3  # the single-seed cell is listed but not tested
    one = comps[("gan", "other", "real")]
    assert one["n"] == 1 and one["t_p"] is None and one["t_p_holm"] is None
    # "other" wins on validation but has one seed: the headline says so instead of testing
    (head,) = result["headlines"]
    assert head["gan"]["generator"] == "other" and "single seed" in head["sentence"]
    json.dumps(result, allow_nan=False)


def test_sentences_say_whether_the_change_is_significant(tmp_path):
    rows = []
    for seed, noise in enumerate((0.001, -0.002, 0.003, 0.0, -0.001, 0.002)):
        rows.append(row(0.01, seed, "real", 0.70 + noise, 0.70))
        rows.append(row(0.01, seed, "gan", 0.72 + noise + 0.001 * (seed % 2), 0.72, "sngan", 1, 0, "mix"))
        rows.append(row(1.0, seed, "real", 0.90 + noise, 0.90))
        rows.append(row(1.0, seed, "gan", 0.90 - noise, 0.89, "sngan", 1, 0, "mix"))
    heads = stats.compute_stats(write_summary(tmp_path, rows))["headlines"]
    low, full = sorted(heads, key=lambda h: h["fraction"])
    assert low["significant"] is True and full["significant"] is False
    assert low["sentence"].startswith("At 1% of the data, the best GAN method (sngan, ratio 1, mix) "
                                      "changed test accuracy by +2.0 pp versus real data only (95% CI")
    assert "Holm p" in low["sentence"] and low["sentence"].endswith("6 seeds).")
    assert full["sentence"].startswith("At 100% of the data,")
    assert "no significant change" in full["sentence"]


def test_duplicate_rows_keep_the_last_and_missing_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="summary.csv"):
        stats.compute_stats(tmp_path)
    rows = [row(0.1, 0, "real", 0.5, 0.5), row(0.1, 0, "real", 0.6, 0.6), row(0.1, 1, "real", 0.7, 0.7)]
    result = stats.write_stats(write_summary(tmp_path, rows))
    (cell,) = result["cells"]
    assert cell["n"] == 2 and cell["test_accuracy"]["mean"] == pytest.approx(0.65)
    assert result["headlines"][0]["sentence"].startswith("At 10% of the data, no GAN method was trained")
    on_disk = json.loads((tmp_path / "stats.json").read_text(),
                         parse_constant=lambda c: pytest.fail(f"{c} in stats.json"))
    assert on_disk == json.loads(json.dumps(result))


def test_each_lever_is_its_own_paired_change_from_the_main_recipe(tmp_path):
    """Levers: one coordinate changed from the main recipe (the family and ratio most cells use),
    the rest held; the difference is paired by seed, Holm-adjusted across the levers."""
    offsets = {("gan", "acgan", 1, 0, "mix"): 0.0, ("gan", "acgan", 1, 0.9, "mix"): -0.010,
               ("gan", "acgan", 1, 0, "pretrain"): 0.004, ("gan", "cgan", 1, 0, "mix"): -0.020,
               ("gan", "acgan", 2, 0, "mix"): 0.006, ("gan+classical", "acgan", 2, 0, "mix"): 0.016}
    rows = []
    for seed, noise in enumerate((0.003, -0.002, 0.001, 0.0, -0.004)):
        rows.append(row(0.01, seed, "real", 0.80 + noise, 0.80))
        for (method, gen, ratio, filt, mode), off in offsets.items():
            wobble = 0.001 * (seed % 2) * (filt > 0)  # only the filter lever's difference varies by seed
            if (gen, seed) != ("cgan", 4):  # cgan lacks seed 4: its lever pairs over 4 seeds
                rows.append(row(0.01, seed, method, 0.81 + noise + off + wobble, 0.8, gen, ratio, filt, mode))
    levers = stats.compute_stats(write_summary(tmp_path, rows))["levers"]
    got = {(e["lever"], e["variant"], e["versus"]): e for e in levers}
    assert list(got) == [
        ("generator", "cgan, ratio 1, mix", "acgan, ratio 1, mix"),
        ("ratio", "acgan, ratio 2, mix", "acgan, ratio 1, mix"),
        ("filter", "acgan, ratio 1, filter 0.9, mix", "acgan, ratio 1, mix"),
        ("mode", "acgan, ratio 1, pretrain then fine-tune", "acgan, ratio 1, mix"),
        ("classical", "acgan + classical, ratio 2, mix", "acgan, ratio 2, mix")]
    # "acgan + classical, ratio 1" was never trained: no ratio lever for "acgan + classical, ratio 2"
    cgan = got[("generator", "cgan, ratio 1, mix", "acgan, ratio 1, mix")]
    assert cgan["seeds"] == [0, 1, 2, 3] and cgan["mean_diff_pp"] == pytest.approx(-2.0)
    assert (cgan["from"], cgan["to"]) == ("acgan", "cgan")
    filt = got[("filter", "acgan, ratio 1, filter 0.9, mix", "acgan, ratio 1, mix")]
    assert filt["mean_diff_pp"] == pytest.approx(-1.0 + 0.1 * 2 / 5)
    classical = got[("classical", "acgan + classical, ratio 2, mix", "acgan, ratio 2, mix")]
    assert classical["mean_diff_pp"] == pytest.approx(1.0)
    tested = [e for e in levers if e["t_p"] is not None]
    assert tested == [filt]  # every other difference is the same on all seeds: only Wilcoxon applies
    assert filt["t_p_holm"] == pytest.approx(filt["t_p"])
    wilcoxon = [e["wilcoxon_p"] for e in levers]
    assert [e["wilcoxon_p_holm"] for e in levers] == pytest.approx(significance.holm(wilcoxon))


def test_tied_selections_and_coarse_validation_are_reported(tmp_path):
    """60 validation images: real and classical tie on mean validation accuracy, so the baseline
    falls to table order (real) and the report says so, with the step size of that validation."""
    from ganaug.report import caveat_items

    rows = []
    for seed, noise in enumerate((0.0, 0.01, -0.01)):
        rows.append(row(0.01, seed, "real", 0.80 + noise, 53 / 60, n_val=60))
        rows.append(row(0.01, seed, "classical", 0.81 + noise, 53 / 60, n_val=60))
        rows.append(row(0.01, seed, "gan", 0.80 + noise, 52 / 60, "acgan", 1, 0, "mix", n_val=60))
        rows.append(row(0.01, seed, "gan", 0.79 + noise, 51 / 60, "acgan", 2, 0, "mix", n_val=60))
    result = stats.compute_stats(write_summary(tmp_path, rows))
    (head,) = result["headlines"]
    assert head["baseline"]["method"] == "real" and head["baseline"]["tied_with"] == ["classical"]
    assert head["gan"]["tied_with"] == [] and head["n_val"] == 60
    items = caveat_items(result, 1)
    assert "60 images at 1%, so validation accuracy moves in steps of 1.7 pp" in " ".join(items)
    assert ("Tie at 1%: the baseline (real) had the same mean validation accuracy as classical; "
            "ties go to the first in table order.") in items


def test_the_levers_sentence_names_significant_changes_and_the_largest():
    def lever(kind, old, new, diff, holm, variant="acgan, ratio 1, mix", n=5):
        return {"lever": kind, "from": old, "to": new, "variant": variant, "fraction": 0.05, "n": n,
                "mean_diff_pp": diff, "ci_low_pp": diff - 1, "ci_high_pp": diff + 1, "t_p_holm": holm}
    levers = [lever("filter", 0.0, 0.9, -0.4, 1.0, "acgan, ratio 1, filter 0.9, mix"),
              lever("classical", "gan", "gan+classical", 2.5, 0.01, "acgan + classical, ratio 1, mix"),
              lever("ratio", 1.0, 2.0, -3.0, 0.2, "acgan, ratio 2, mix"),
              lever("mode", "mix", "pretrain", 9.0, None, n=1)]  # one seed: not counted
    assert wording.levers_sentence(levers, 0.05) == (
        "1 of 3 lever changes moved test accuracy significantly: classical without → with classical "
        "(acgan + classical, ratio 1, mix, 5%) +2.50 pp. The largest in size: ratio 1 → 2 (acgan, ratio 2, "
        "mix, 5%), -3.00 pp (95% CI -4.00 to -2.00, Holm p = 0.20).")
    assert wording.levers_sentence(levers[:1], 0.05) == (
        "The one lever change, filter none → 0.9 (acgan, ratio 1, filter 0.9, mix, 5%), did not move test "
        "accuracy significantly: -0.40 pp (95% CI -1.40 to 0.60, Holm p = 1.00).")
    assert wording.levers_sentence(levers[1:2], 0.05).startswith(
        "The one lever change, classical without → with classical (acgan + classical, ratio 1, mix, 5%), moved "
        "test accuracy significantly: +2.50 pp")
    assert wording.levers_sentence([], 0.05) == "No lever was measured on two or more seeds."
