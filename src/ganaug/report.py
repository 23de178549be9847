"""The study report: report.md and a self-contained report.html, drawn from stats.json's dict.

The report is first built as a list of blocks (headings, paragraphs, tables, figures); the
Markdown renderer below and `report_html` render the same blocks, so both files say the same.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

from . import plots
from .runs import atomic_write_text
from .significance import CONFIDENCE
from .stats import ALPHA, GAN_METHODS, GENERATOR_METRICS
from .wording import describe_variant, format_fraction, format_p, lever_change, levers_sentence

PLOTS = (("accuracy_vs_fraction", plots.study_accuracy_vs_fraction,
          "Test accuracy against the fraction of real training data (log scale): mean and 95% CI "
          "over seeds. GAN methods show the variant selected by validation accuracy at each fraction."),
         ("gain_vs_ratio", plots.study_gain_vs_ratio,
          "Test-accuracy difference to real-only training against the number of synthetic images per "
          "real image: paired mean and 95% CI over seeds."),
         ("per_class_f1_change", plots.study_per_class_f1_change,
          "Per-class test F1 of the best GAN variant minus the stronger baseline (both chosen by "
          "validation): paired mean and 95% CI over seeds."),
         ("generator_metrics", plots.study_generator_metrics,
          "Generator metrics per fraction (mean ± std over seeds), measured in ganaug's "
          "reference-network feature space."))


def write_report(study_dir: str | Path, stats: dict, plot_format: str = "png") -> dict[str, Path]:
    """Draw the study plots, then write report.md and report.html; returns every file written."""
    from .report_html import render_html

    study_dir = Path(study_dir)
    written = write_plots(study_dir, stats, plot_format)
    blocks = build_blocks(study_dir, stats, written)
    atomic_write_text(study_dir / "report.md", render_markdown(blocks, study_dir))
    atomic_write_text(study_dir / "report.html", render_html(blocks, stats["study"]))
    return {**written, "report.md": study_dir / "report.md", "report.html": study_dir / "report.html"}


def write_plots(study_dir: Path, stats: dict, plot_format: str = "png") -> dict[str, Path]:
    written = {}
    for name, draw, _ in PLOTS:
        path = draw(stats, study_dir / f"{name}.{plot_format}")
        if path is not None:
            written[name] = path
    return written


# ---------------------------------------------------------------- numbers as text

def pct(summary: dict, with_std: bool = True) -> str:
    if summary["mean"] is None:
        return "n/a"
    text = f"{summary['mean'] * 100:.2f}"
    return text + (f" ± {summary['std'] * 100:.2f}" if with_std and summary["std"] is not None else "")


def pct_ci(summary: dict) -> str:
    if summary["ci_low"] is None:
        return "n/a"
    return f"{summary['ci_low'] * 100:.2f} to {summary['ci_high'] * 100:.2f}"


def pp(x: float | None) -> str:
    return "n/a" if x is None else ("0.00" if round(x, 2) == 0 else f"{x:+.2f}")


def pp_ci(c: dict) -> str:
    return "n/a" if c["ci_low_pp"] is None else f"{c['ci_low_pp']:.2f} to {c['ci_high_pp']:.2f}"


def num(x: float | None, spec: str = ".2f") -> str:
    return "n/a" if x is None else format(x, spec)


def variant(c: dict) -> str:
    return describe_variant(c) if c["method"] in GAN_METHODS else c["method"]


# ---------------------------------------------------------------- content

def build_blocks(study_dir: Path, stats: dict, figures: dict[str, Path]) -> list[tuple]:
    heads, comps = stats["headlines"], stats["comparisons"]
    n_tests = sum(c["t_p"] is not None for c in comps)
    blocks: list[tuple] = [("title", f"{stats['study']}: does GAN augmentation help, and when?")]
    progress = stats.get("progress")
    if progress and progress["finished"] < progress["total"]:
        blocks.append(("warning", f"Interim report: {progress['finished']} of {progress['total']} tasks "
                                  "of this study have finished. Cells may still lack seeds, and the "
                                  "selection, the statistics and these sentences will change; this is "
                                  "not the study's answer."))
    blocks.append(("answer", [h["sentence"] for h in heads]))
    blocks.append(("p", f"Differences are test accuracy of the GAN variant minus the baseline, in "
                        f"percentage points (pp), paired by seed. \"Significant\" means a Holm-adjusted "
                        f"paired t-test p < {ALPHA:g} across all {n_tests} tested comparisons of this "
                        f"study. Every number below is in stats.json."))
    blocks += [("h2", "Headline"), headline_table(heads), ("h2", "Evidence")]
    captions = {name: caption for name, _, caption in PLOTS}
    blocks += [("figure", figures[name], captions[name]) for name in captions if name in figures]
    samples = sample_figures(study_dir, stats["generators"])
    if samples:
        blocks += [("h3", "Generated samples"),
                   ("p", "One grid per generator family and fraction (from the lowest seed); one row per class."),
                   *samples]
    blocks += [("h2", "Results per cell"),
               ("p", f"Mean ± standard deviation over seeds and the {CONFIDENCE:.0%} t-interval of the "
                     "mean; accuracies and F1 in %. \"Selected\" marks the GAN variant chosen by mean "
                     "validation accuracy for its method and fraction."),
               cell_table(stats["cells"]),
               ("h2", "Paired comparisons"),
               ("p", "Each cell against real-only training and against classical augmentation of the "
                     "same dataset, architecture and fraction, over the seeds both have. d_z is the mean "
                     "difference divided by the standard deviation of the differences."),
               comparison_table(comps)]
    if stats.get("levers"):
        blocks += [("h2", "Levers"),
                   ("p", "What each option did on its own: a GAN variant against the same variant with that "
                         "one option set back to the main recipe, paired by seed. Against a fixed baseline "
                         "the gap moves by exactly this difference. Holm correction across the levers."),
                   ("p", levers_sentence(stats["levers"], ALPHA)),
                   lever_table(stats["levers"])]
    if stats["generators"]:
        blocks += [("h2", "Generator metrics"), generator_table(stats["generators"])]
    blocks += [("h2", "Design"), ("ul", design_items(stats)),
               ("h2", "Caveats"), ("ul", caveat_items(stats, n_tests))]
    return blocks


def headline_table(heads: list[dict]) -> tuple:
    header = ["dataset", "arch", "fraction", "best GAN variant", "baseline", "GAN test acc. (%)",
              "baseline test acc. (%)", "difference (pp)", "95% CI (pp)", "p (t)", "Holm p (t)",
              "p (Wilcoxon)", "Holm p (Wilcoxon)", "d_z", "seeds"]
    rows = []
    for h in heads:
        g, b, c = h["gan"], h["baseline"], h["comparison"] or {}
        rows.append([h["dataset"], h["arch"], format_fraction(h["fraction"]),
                     g["description"] if g else "none", b["method"] if b else "none",
                     num(g and g["test_accuracy_mean"] and g["test_accuracy_mean"] * 100),
                     num(b and b["test_accuracy_mean"] and b["test_accuracy_mean"] * 100),
                     pp(c.get("mean_diff_pp")), pp_ci(c) if c else "n/a", format_p(c.get("t_p")),
                     format_p(c.get("t_p_holm")), format_p(c.get("wilcoxon_p")),
                     format_p(c.get("wilcoxon_p_holm")), num(c.get("cohen_dz")), str(c.get("n", 0))])
    return ("table", header, rows)


def cell_table(cells: list[dict]) -> tuple:
    header = ["dataset", "arch", "fraction", "method", "variant", "seeds", "test acc. (%)",
              "95% CI (%)", "macro F1 (%)", "val. acc. (%)", "selected"]
    rows = [[c["dataset"], c["arch"], format_fraction(c["fraction"]), c["method"], variant(c),
             str(c["n"]), pct(c["test_accuracy"]), pct_ci(c["test_accuracy"]), pct(c["test_f1"]),
             pct(c["val_accuracy"], with_std=False),
             "yes" if c.get("selected") and c["method"] in GAN_METHODS else ""] for c in cells]
    return ("table", header, rows)


def comparison_table(comps: list[dict]) -> tuple:
    header = ["dataset", "arch", "fraction", "variant", "versus", "seeds", "difference (pp)",
              "95% CI (pp)", "p (t)", "Holm p (t)", "p (Wilcoxon)", "Holm p (Wilcoxon)", "d_z"]
    rows = [[c["dataset"], c["arch"], format_fraction(c["fraction"]), variant(c), c["baseline"],
             str(c["n"]), pp(c["mean_diff_pp"]), pp_ci(c), format_p(c["t_p"]), format_p(c["t_p_holm"]),
             format_p(c["wilcoxon_p"]), format_p(c["wilcoxon_p_holm"]), num(c["cohen_dz"])]
            for c in comps]
    return ("table", header, rows)


def lever_table(levers: list[dict]) -> tuple:
    header = ["dataset", "arch", "fraction", "lever", "change", "variant", "versus", "seeds",
              "difference (pp)", "95% CI (pp)", "p (t)", "Holm p (t)", "d_z"]
    rows = [[e["dataset"], e["arch"], format_fraction(e["fraction"]), e["lever"],
             lever_change(e),
             e["variant"], e["versus"], str(e["n"]), pp(e["mean_diff_pp"]), pp_ci(e),
             format_p(e["t_p"]), format_p(e["t_p_holm"]), num(e["cohen_dz"])] for e in levers]
    return ("table", header, rows)


def generator_table(gens: list[dict]) -> tuple:
    present = [m for m in GENERATOR_METRICS if any(m in g["metrics"] for g in gens)]
    header = ["dataset", "fraction", "generator", "seeds", *present]

    def cell(s):
        return "" if s is None else f"{s['mean']:.3g}" + (f" ± {s['std']:.2g}" if s["std"] is not None else "")
    rows = [[g["dataset"], format_fraction(g["fraction"]), g["generator"], str(g["n"]),
             *[cell(g["metrics"].get(m)) for m in present]] for g in gens]
    return ("table", header, rows)


def resolve_sample(study_dir: Path, path: str) -> Path | None:
    """samples paths may be absolute, relative to the study folder, or relative to the working folder."""
    for candidate in (study_dir / path, Path(path)):
        if candidate.is_file():
            return candidate
    return None


def sample_figures(study_dir: Path, gens: list[dict]) -> list[tuple]:
    figures = []
    for g in gens:
        for sample in g["samples"][:1]:
            path = resolve_sample(study_dir, sample["path"])
            if path is not None:
                figures.append(("figure", path, f"{g['generator']} at {format_fraction(g['fraction'])} "
                                                f"of {g['dataset']} (seed {sample['seed']})"))
    return figures


def _listing(values) -> str:
    shown = [format_fraction(v) if isinstance(v, float) and 0 < v <= 1 else f"{v:g}" if isinstance(v, float)
             else str(v) for v in values if v != ""]
    return ", ".join(shown) if shown else "none"


def design_items(stats: dict) -> list[str]:
    d = stats["design"]
    gens = stats["generators"]
    return [
        f"Grid: datasets {_listing(d['dataset'])}; classifiers {_listing(d['arch'])}; real-data "
        f"fractions {_listing(d['fraction'])}; methods {_listing(d['method'])}; generator families "
        f"{_listing(d['generator'])}; synthetic ratios {', '.join(f'{r:g}' for r in d['ratio'] if r) or 'none'}; "
        f"confidence filters {', '.join(f'{r:g}' for r in d['filter'] if r) or 'off'}; modes "
        f"{_listing(d['mode'])}; seeds {_listing(d['seed'])}. {stats['n_classifiers']} classifiers and "
        f"{sum(g['n'] for g in gens)} generators were trained.",
        "Pairing: the same seed draws the same real training subset for every method of a dataset, "
        "architecture and fraction, and the generator of that seed is trained on exactly that subset; "
        "comparisons therefore pair runs by seed and use only the seeds both runs have.",
        "Selection by validation: for each dataset, architecture and fraction, the best GAN variant "
        "(generator family, ratio, filter, mode, with or without classical transforms) is the one with "
        "the highest mean validation accuracy over seeds, and the baseline is whichever of real-only "
        "and classical augmentation has the higher mean validation accuracy. The validation split is a "
        "stratified 10% of the labelled subset each run sees.",
        "The official test split was never used for training, early stopping or any selection; it is "
        "read only to report the test scores of already-chosen models.",
        f"Statistics: mean, sample standard deviation and {CONFIDENCE:.0%} t-interval per cell; paired "
        "t-test and two-sided Wilcoxon signed-rank test (zero differences dropped) on the per-seed "
        "differences; Cohen's d_z; Holm's step-down correction across all comparisons of the study, "
        "separately for the t-test and the Wilcoxon p-values.",
        "Generator metrics (fd_domain, kid_domain, precision/recall k = 3, density, coverage) are "
        "measured in the feature space of ganaug's own reference network, not Inception: they compare "
        "ganaug runs with each other and are not comparable with published Inception FIDs. "
        "gan_test_accuracy is the reference network's accuracy on generated images; cas_accuracy is "
        "the real-test accuracy of a classifier trained on generated images only.",
    ]


def caveat_items(stats: dict, n_tests: int) -> list[str]:
    cells = stats["cells"]
    max_n = max((c["n"] for c in cells), default=0)
    items = [
        f"Multiple comparisons: {n_tests} comparisons were tested. Holm's correction controls the "
        "chance of any false positive among them; unadjusted p-values are shown but are not evidence "
        "on their own.",
        f"Small n: with {max_n} seeds the t-interval assumes roughly normal per-seed differences. The "
        f"smallest two-sided Wilcoxon p possible with n pairs is 2/2^n ({2 / 2 ** max(max_n, 1):.3g} "
        f"here), so the Wilcoxon test cannot reach p < {ALPHA:g} with fewer than 6 seeds.",
        "Selection: the best variant wins on validation accuracy, which can favour a lucky variant; "
        "its test difference is an honest estimate for that choice, but a re-run may select another.",
        "Scope: seeds vary the real subset, the initialisation and the generator; the conclusions hold "
        "for the datasets and classifiers of this grid only.",
    ]
    sizes = sorted({(h["fraction"], h["n_val"]) for h in stats["headlines"] if h.get("n_val")})
    if sizes:
        items.append("Coarse validation: each run validates on its own split of "
                     + ", ".join(f"{n:,} images at {format_fraction(f)}" for f, n in sizes)
                     + f", so validation accuracy moves in steps of {100 / sizes[0][1]:.2g} pp at "
                     f"{format_fraction(sizes[0][0])} and selections there can tie.")
    for h in stats["headlines"]:
        for side, name in (("baseline", "baseline"), ("gan", "best GAN variant")):
            chosen = h.get(side) or {}
            if chosen.get("tied_with"):
                label = chosen.get("description") or chosen["method"]
                items.append(f"Tie at {format_fraction(h['fraction'])}: the {name} ({label}) had the same "
                             f"mean validation accuracy as {', '.join(chosen['tied_with'])}; ties go to "
                             "the first in table order.")
    precision = stats.get("precision") or {}
    if len(precision) > 1:
        items.append("Mixed numerics: " + ", ".join(f"{n} classifiers {k}" for k, n in precision.items())
                     + " (with precision auto, a study resumed on another machine trains in that machine's "
                     "precision: bf16 autocast only where the CPU has native bf16 and a timed step "
                     "was faster). A seed "
                     "still draws the same real subset, but trains to slightly different weights under "
                     "another precision, so the pairing is by data, not by bits.")
    short = [c for c in cells if c["n"] < max_n]
    if short:
        items.append(f"Missing runs: {len(short)} of {len(cells)} cells have fewer than {max_n} seeds "
                     "(see the seeds column); their comparisons use only the seeds present.")
    return items


# ---------------------------------------------------------------- Markdown

def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*").replace("_", "\\_")


def _md_link(path: Path, study_dir: Path) -> str:
    return quote(os.path.relpath(path, study_dir).replace(os.sep, "/"))


def render_markdown(blocks: list[tuple], study_dir: Path) -> str:
    out: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind == "title":
            out.append(f"# {block[1]}")
        elif kind == "answer":
            out.extend(f"**{s}**" for s in block[1])
        elif kind == "warning":
            out.append(f"> **{block[1]}**")
        elif kind in ("h2", "h3"):
            out.append(("## " if kind == "h2" else "### ") + block[1])
        elif kind == "p":
            out.append(block[1])
        elif kind == "ul":
            out.append("\n".join(f"- {item}" for item in block[1]))
        elif kind == "table":
            header, rows = block[1], block[2]
            lines = ["| " + " | ".join(_md_escape(h) for h in header) + " |",
                     "|" + "|".join("---" for _ in header) + "|"]
            lines += ["| " + " | ".join(_md_escape(v) for v in row) + " |" for row in rows]
            out.append("\n".join(lines))
        elif kind == "figure":
            path, caption = block[1], block[2]
            link = _md_link(path, study_dir)
            out.append(f"[{caption} (PDF)]({link})" if path.suffix == ".pdf"
                       else f"![{caption}]({link})\n\n*{caption}*")
    return "\n\n".join(out) + "\n"
