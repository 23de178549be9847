"""The words of a study's results: numbers, p-values and variants as the report writes them, and
the one-sentence answer per real-data fraction. Shared by stats.json's headlines and the report."""

from __future__ import annotations

BASELINE_NAMES = {"real": "real data only", "classical": "classical augmentation"}


def format_fraction(fraction: float) -> str:
    return f"{fraction * 100:g}%"


def format_signed(x: float, digits: int = 1) -> str:
    text = f"{x:+.{digits}f}"
    return text[1:] if float(text) == 0 else text  # no "+0.0" or "-0.0"


def format_number(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else format_signed(x, digits).lstrip("+")


def format_p(p: float | None) -> str:
    if p is None:
        return "n/a"
    if p < 0.001:
        return "< 0.001"
    # Near the 0.05 threshold two decimals mislead (0.054 -> "0.05"), so small p keep 3 digits.
    return f"{p:.3g}" if p < 0.1 else f"{p:.2f}"


def p_clause(name: str, p: float | None) -> str:
    text = format_p(p)
    return f"{name} {text}" if text.startswith("<") else f"{name} = {text}"


def describe_variant(cell: dict) -> str:
    name = (cell["generator"] or "GAN") + (" + classical" if cell["method"] == "gan+classical" else "")
    parts = [name, f"ratio {cell['ratio']:g}"]
    if cell["filter"]:
        parts.append(f"filter {cell['filter']:g}")
    parts.append("pretrain then fine-tune" if cell["mode"] == "pretrain" else cell["mode"] or "mix")
    return ", ".join(parts)


def headline_sentence(h: dict, alpha: float, qualify: bool = False) -> str:
    """The answer for one fraction in one sentence, from a headline of `stats.headlines`
    (`alpha`: the significance threshold its Holm p-values were judged by)."""
    where = f"At {format_fraction(h['fraction'])} of the data"
    if qualify:
        where += f" ({h['dataset']}, {h['arch']})"
    if h["gan"] is None:
        return f"{where}, no GAN method was trained, so there is no GAN result to report."
    gan = f"the best GAN method ({h['gan']['description']})"
    if h["baseline"] is None:
        return f"{where}, neither real-only nor classical baselines were trained, so {gan} has no comparison."
    vs = BASELINE_NAMES[h["baseline"]["method"]]
    c = h["comparison"]
    n, diff = c["n"], c["mean_diff_pp"]
    if n == 0:
        return f"{where}, {gan} and {vs} share no seed, so they cannot be compared."
    if n == 1:
        return (f"{where}, {gan} changed test accuracy by {format_signed(diff)} pp versus {vs} on a "
                "single seed, too few for a confidence interval or a test.")
    if c["t_p"] is None:
        return (f"{where}, {gan} changed test accuracy by {format_signed(diff)} pp versus {vs} on "
                f"each of {n} seeds alike, so the t-test is undefined "
                f"({p_clause('Wilcoxon p', c['wilcoxon_p'])}, Holm p = {format_p(c['wilcoxon_p_holm'])}).")
    evidence = (f"95% CI {format_number(c['ci_low_pp'])} to {format_number(c['ci_high_pp'])}, "
                f"{p_clause('p', c['t_p'])}, {p_clause('Holm p', c['t_p_holm'])}, {n} seeds")
    if h["significant"]:
        return f"{where}, {gan} changed test accuracy by {format_signed(diff)} pp versus {vs} ({evidence})."
    after = " after correction for multiple comparisons" if c["t_p"] < alpha else ""
    return (f"{where}, {gan} made no significant change to test accuracy versus {vs}{after}: "
            f"{format_signed(diff)} pp ({evidence}).")


def _lever_value(lever: str, value) -> str:
    if lever == "classical":
        return "with classical" if value == "gan+classical" else "without"
    if lever == "filter":
        return f"{value:g}" if value else "none"
    if lever == "mode":
        return "pretrain then fine-tune" if value == "pretrain" else value
    return f"{value:g}" if isinstance(value, float) else str(value)


def lever_change(e: dict) -> str:
    """A lever of stats.json's levers as "from → to", e.g. "none → 0.9" for a confidence filter."""
    return f"{_lever_value(e['lever'], e['from'])} → {_lever_value(e['lever'], e['to'])}"


def levers_sentence(levers: list[dict], alpha: float) -> str:
    """One sentence over stats.json's levers: which changed test accuracy significantly (Holm p <
    ``alpha``), else none, and the largest effect either way."""
    tested = [e for e in levers if e["mean_diff_pp"] is not None and e["n"] >= 2]
    if not tested:
        return "No lever was measured on two or more seeds."

    def named(e):
        return f"{e['lever']} {lever_change(e)} ({e['variant']}, {format_fraction(e['fraction'])})"
    significant = [e for e in tested if e["t_p_holm"] is not None and e["t_p_holm"] < alpha]
    top = max(tested, key=lambda e: abs(e["mean_diff_pp"]))
    effect = (f"{format_signed(top['mean_diff_pp'], 2)} pp (95% CI {format_number(top['ci_low_pp'], 2)} to "
              f"{format_number(top['ci_high_pp'], 2)}, {p_clause('Holm p', top['t_p_holm'])})")
    if len(tested) == 1:
        moved = "moved" if significant else "did not move"
        return f"The one lever change, {named(top)}, {moved} test accuracy significantly: {effect}."
    head = (f"{len(significant)} of {len(tested)} lever changes moved test accuracy significantly: "
            + "; ".join(f"{named(e)} {format_signed(e['mean_diff_pp'], 2)} pp" for e in significant)
            if significant else f"None of the {len(tested)} lever changes moved test accuracy significantly")
    return f"{head}. The largest in size: {named(top)}, {effect}."
