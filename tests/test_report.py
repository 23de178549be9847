"""The study report end to end: a study folder built here (fabricated scores, real tiny PNGs),
then ganaug.stats.write_stats and ganaug.report.write_report, checking the files they write."""

from __future__ import annotations

import base64
import csv
import html
import json
import re
from pathlib import Path

import numpy as np
import pytest

from ganaug.report import write_report
from ganaug.stats import write_stats

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot")
ID_COLUMNS = ["study", "dataset", "arch", "fraction", "seed", "method", "generator", "ratio", "filter", "mode"]
VARIANTS = [("real", "", 0, 0, ""), ("classical", "", 0, 0, ""), ("gan", "sngan", 1, 0, "mix"),
            ("gan", "sngan", 2, 0, "mix"), ("gan+classical", "sngan", 1, 0.9, "pretrain")]
FRACTIONS = {0.01: 0.74, 0.1: 0.85}  # fabricated real-only accuracy per fraction
GAIN = {"real": 0.0, "classical": 0.005, "gan": 0.015, "gan+classical": 0.01}  # fabricated
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def build_study(root: Path) -> Path:
    """2 fractions x 3 seeds x 5 method variants, per-class F1, and one generator per (fraction, seed)."""
    import matplotlib.pyplot as plt

    study = root / "results" / "studies" / "quick Run 1"
    study.mkdir(parents=True)
    rng = np.random.default_rng(0)
    summary, per_class, generators = [], [], []
    for fraction, level in FRACTIONS.items():
        for seed in (0, 1, 2):
            subset_effect = rng.normal(0, 0.01)  # shared by every method of a seed: what pairing removes
            gen_dir = root / "results" / "generators" / f"SNGANOriginalGenerator Run {len(generators) + 1}"
            gen_dir.mkdir(parents=True)
            plt.imsave(gen_dir / "samples.png", rng.integers(0, 255, (30, 30)).astype(np.uint8), cmap="gray")
            # the runner may write absolute paths or paths relative to the study folder
            samples = gen_dir / "samples.png" if seed else Path("..", "..", *gen_dir.parts[-2:], "samples.png")
            generators.append({
                "study": "quick", "dataset": "fashion-mnist", "fraction": fraction, "seed": seed,
                "generator": "sngan", "fd_domain": 40 * (1.2 - fraction) + rng.normal(0, 2),
                "kid_domain": 0.02, "precision_k3": 0.6, "recall_k3": 0.3 + fraction, "density": 0.9,
                "coverage": 0.5 + fraction, "gan_test_accuracy": 0.8, "cas_accuracy": "",
                "val_accuracy_gain": "", "seconds": 30.0, "run_dir": str(gen_dir), "samples": str(samples)})
            for method, generator, ratio, filt, mode in VARIANTS:
                acc = level + subset_effect + GAIN[method] + 0.003 * ratio + rng.normal(0, 0.004)
                row = {"study": "quick", "dataset": "fashion-mnist", "arch": "cnn", "fraction": fraction,
                       "seed": seed, "method": method, "generator": generator, "ratio": ratio,
                       "filter": filt, "mode": mode, "test_accuracy": round(acc, 4),
                       "test_f1": round(acc - 0.01, 4), "test_precision": round(acc, 4),
                       "test_recall": round(acc, 4), "val_accuracy": round(acc + rng.normal(0, 0.004), 4),
                       "seconds": 12.5, "precision": "bf16" if seed == 2 else "fp32",
                       "run_dir": f"results/classifiers/CNN Run {len(summary) + 1}",
                       "generator_run_dir": str(gen_dir) if generator else ""}
                summary.append(row)
                per_class += [{**{k: row[k] for k in ID_COLUMNS}, "class": name,
                               "f1": round(acc + rng.normal(0, 0.02), 4)} for name in CLASSES]
    write_csv(study / "summary.csv", summary)
    write_csv(study / "per_class.csv", per_class)
    write_csv(study / "generators.csv", generators)
    return study


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = build_study(tmp_path_factory.mktemp("study"))
    stats = write_stats(folder)
    written = write_report(folder, stats)
    return folder, stats, written


def body_text(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "\n", page))


def test_stats_json_is_strict_json_and_matches(study):
    folder, stats, _ = study
    text = (folder / "stats.json").read_text()
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in stats.json")) == stats
    assert [h["fraction"] for h in stats["headlines"]] == [0.01, 0.1]
    assert len(stats["cells"]) == 10 and stats["n_classifiers"] == 30


def test_mixed_precision_is_counted_and_reported(study):
    # a study resumed on a machine without native bf16 trains the rest in fp32 (precision auto)
    folder, stats, _ = study
    assert stats["precision"] == {"bf16": 10, "fp32": 20}
    assert "Mixed numerics: 10 classifiers bf16, 20 classifiers fp32" in (folder / "report.md").read_text()


def test_html_is_self_contained(study):
    folder, _, written = study
    page = (folder / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "<link" not in page and "<script" not in page and "@import" not in page
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == 4 + 2  # four study plots, one sample grid per fraction
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    for name in ("accuracy_vs_fraction", "gain_vs_ratio", "per_class_f1_change", "generator_metrics"):
        assert written[name] == folder / f"{name}.png"
        assert written[name].read_bytes().startswith(PNG_MAGIC)
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_both_reports_open_with_one_sentence_per_fraction(study):
    folder, stats, _ = study
    sentences = [h["sentence"] for h in stats["headlines"]]
    assert sentences[0].startswith("At 1% of the data, the best GAN method (sngan")
    assert sentences[1].startswith("At 10% of the data, the best GAN method (sngan")
    page = (folder / "report.html").read_text()
    after_title = page.split("</h1>", 1)[1]
    assert after_title.lstrip().startswith('<section class="answer">'
                                           + "".join(f"<p>{html.escape(s)}</p>" for s in sentences))
    md = (folder / "report.md").read_text().splitlines()
    assert md[0].startswith("# quick")
    assert [line for line in md[1:] if line][:2] == [f"**{s}**" for s in sentences]


def test_reports_contain_the_numbers_of_stats_json(study):
    folder, stats, _ = study
    text = body_text((folder / "report.html").read_text())
    md = (folder / "report.md").read_text()
    for head in stats["headlines"]:
        comparison = head["comparison"]
        for number in (f"{comparison['mean_diff_pp']:+.2f}", f"{comparison['ci_low_pp']:.2f}",
                       f"{comparison['ci_high_pp']:.2f}"):
            assert number in text and number in md
    for cell in stats["cells"]:
        accuracy = cell["test_accuracy"]
        number = f"{accuracy['mean'] * 100:.2f} ± {accuracy['std'] * 100:.2f}"
        assert number in text and number in md
    for comparison in stats["comparisons"]:
        assert f"{comparison['mean_diff_pp']:+.2f}" in text
    # the one lever this grid measures: sngan ratio 1 -> 2 (mix, no filter), at each fraction
    assert [(e["lever"], e["from"], e["to"]) for e in stats["levers"]] == [("ratio", 1, 2)] * 2
    assert "Levers" in text and "1 → 2" in md
    for lever in stats["levers"]:
        assert f"{lever['mean_diff_pp']:+.2f}" in text and f"{lever['mean_diff_pp']:+.2f}" in md
    fd = stats["generators"][0]["metrics"]["fd_domain"]["mean"]
    assert f"{fd:.3g}" in text
    for needle in ("Holm", "never used for training, early stopping or any selection",
                   "not comparable with published Inception FIDs", "Multiple comparisons", "Small n"):
        assert needle in text and needle in md


def test_markdown_links_plots_and_samples_relatively(study):
    folder, _, _ = study
    md = (folder / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert "accuracy_vs_fraction.png" in links
    assert "../../generators/SNGANOriginalGenerator%20Run%201/samples.png" in links
    assert not [link for link in links if link.startswith(("/", "http"))]


@pytest.mark.parametrize("plot_format", ["svg", "pdf"])
def test_other_plot_formats(tmp_path, plot_format):
    folder = build_study(tmp_path)
    write_report(folder, write_stats(folder), plot_format=plot_format)
    page = (folder / "report.html").read_text()
    md = (folder / "report.md").read_text()
    assert (folder / f"accuracy_vs_fraction.{plot_format}").is_file()
    if plot_format == "svg":
        assert page.count('<img src="data:image/svg+xml;base64,') == 4
        assert "](accuracy_vs_fraction.svg)" in md
    else:
        assert "<code>accuracy_vs_fraction.pdf</code>" in page
        assert "(PDF)](accuracy_vs_fraction.pdf)" in md
    assert page.count('<img src="data:image/png;base64,') == 2  # the generators' own PNG grids
