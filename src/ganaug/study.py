"""`ganaug study`: the whole experiment in one command, resumable, on local processes or Ray.

The grid is expanded into tasks (``study_tasks``): one generator per (fraction, seed, family),
trained on exactly the real training subset of that cell, and one classifier per (arch, fraction,
seed, variant). GAN classifiers wait for their generator (and, when filtering, for the cell's
real-only classifier). Each finished task is recorded atomically in ``tasks/<id>.json``;
`--resume` skips recorded tasks, so a killed study ends with the same numbers as an
uninterrupted one. This module plans, schedules and reports.
"""

from __future__ import annotations

import csv
import io
import shutil
from dataclasses import replace
from pathlib import Path

from .errors import UserError
from .progress import progress_bar
from .runs import INCOMPLETE_MARKER, allocate_run, atomic_write_json, atomic_write_text, read_json, versions
from .study_config import StudyConfig, study_config_from_dict
from .study_tasks import (STARTED_DIR, expand, finished_results, lost_inputs, recorded_run, started_path,
                          task_path)
from .study_time import calibrated_estimates, estimate_seconds, format_duration

INTERIM_DIR = "interim"  # `ganaug study --interim` writes its tables and report here
SUMMARY_COLUMNS = ("study", "dataset", "arch", "fraction", "seed", "method", "generator", "ratio",
                   "filter", "mode", "test_accuracy", "test_f1", "test_precision", "test_recall",
                   "val_accuracy", "n_real", "n_val", "n_synthetic", "filter_kept", "seconds", "precision",
                   "run_dir", "generator_run_dir")
GENERATOR_COLUMNS = ("study", "dataset", "fraction", "seed", "generator", "fd_domain", "kid_domain",
                     "precision_k3", "recall_k3", "density", "coverage", "gan_test_accuracy",
                     "cas_accuracy", "seconds", "precision", "run_dir", "samples")


# ---------------------------------------------------------------- the study

def latest_incomplete(out: Path, purpose: str) -> Path:
    root = out / "results" / "studies"
    candidates = [p for p in root.glob("* Run *") if (p / INCOMPLETE_MARKER).exists()] if root.is_dir() else []
    if not candidates:
        raise UserError(f"no unfinished study under {root} {purpose}")
    return max(candidates, key=lambda p: p.stat().st_mtime)


def open_study(out: Path, study: str | bool, purpose: str) -> tuple[Path, dict]:
    """An existing study's folder (``True``: the latest unfinished one under ``out``) and its
    saved config.json."""
    study_dir = latest_incomplete(out, purpose) if study is True else Path(study)
    if not (study_dir / "config.json").is_file():
        raise UserError(f"{study_dir} is not a study folder")
    return study_dir, read_json(study_dir / "config.json")


def plan_study(cfg: StudyConfig, executor: str = "local", say=print, workers: int | None = None) -> float:
    """Print the study's grid per fraction and its estimated time; return the estimate (seconds).
    ``workers`` overrides the configuration's, as in ``run_study``."""
    from .executors import check_executor, default_workers

    check_executor(executor, None)
    tasks = expand(cfg)
    workers = default_workers(workers or cfg.workers, cfg.threads_per_task)
    say(f"study {cfg.name}: {len(tasks)} tasks on {cfg.dataset}, {cfg.seeds} seeds, archs "
        f"{', '.join(cfg.archs)}")
    total = 0.0
    for fraction in cfg.fractions:
        cell = [t for t in tasks if t["fraction"] == fraction]
        seconds = sum(estimate_seconds(cfg, t) for t in cell)
        total += seconds
        gens = sorted({t["family"] for t in cell if t["kind"] == "generator"})
        say(f"  {fraction:g}: {sum(t['kind'] == 'classifier' for t in cell)} classifiers, "
            f"{sum(t['kind'] == 'generator' for t in cell)} generators ({', '.join(gens) or 'none'}), "
            f"{len(cfg.variants(fraction))} methods per seed; {format_duration(seconds)} of task time")
    say(f"estimated {format_duration(total / workers)} on {workers} {executor} worker(s) of "
        f"{cfg.threads_per_task} thread(s) (from throughputs measured on a 2-core CPU)")
    return total / workers


def run_study(cfg: StudyConfig | None, out: str | Path, data_dir: str | Path, executor: str = "local",
              ray_address: str | None = None, resume: str | bool | None = None, say=print,
              workers: int | None = None) -> Path:
    """Run (or resume) a study; return its folder. ``say`` receives the human-readable lines.
    ``workers`` overrides the configuration's (also on resume): it changes speed, never numbers."""
    from .data import load_split
    from .executors import check_executor, make_executor

    check_executor(executor, ray_address)
    out = Path(out)
    if resume:
        study_dir, saved = open_study(out, resume, "to resume; start one without --resume")
        cfg = study_config_from_dict(saved["study"])
        data_dir = saved["data_dir"]
    if workers:
        cfg = replace(cfg, workers=workers)
    load_split(data_dir, cfg.dataset, "train")  # bad data fails here, before anything is written
    tasks = expand(cfg)
    if not resume:
        cfg = cfg.frozen()
        run = allocate_run(out, "studies", cfg.name, with_models=False)
        study_dir = run.results
        atomic_write_json(study_dir / "config.json", {
            "study": cfg.to_dict(), "data_dir": str(Path(data_dir).resolve()), "out": str(out.resolve()),
            "executor": executor, "tasks": [t["id"] for t in tasks], "versions": versions()})
    done = finished_results(study_dir, tasks)
    lost, retry = lost_inputs(tasks, done)
    for tid in lost + retry:  # retrained: same seed and subset, so the same weights as the lost ones
        del done[tid]
        task_path(study_dir, tid).unlink()
    for task in tasks:  # a started run that used a lost model starts again with the retrained one
        if set(task["deps"].values()) & set(lost):
            started_path(study_dir, task["id"]).unlink(missing_ok=True)
    kind = {t["id"]: t["kind"] for t in tasks}
    for what, label in (("generator", "generator(s)"),
                        ("classifier", "classifier(s) that a confidence filter needs")):
        ids = [tid for tid in lost if kind[tid] == what]
        if ids:
            say(f"{len(ids)} finished {label} have lost their run folder and will be trained again: "
                f"{', '.join(ids)}")
    if retry:
        say(f"{len(retry)} failed task(s) that needed them will run again: {', '.join(retry)}")
    todo = [t for t in tasks if t["id"] not in done]
    estimates = calibrated_estimates(cfg, tasks, done)
    ex = make_executor(executor, cfg.workers, cfg.threads_per_task, ray_address) if todo else None
    workers = ex.workers if ex else 1
    remaining = sum(estimates[t["id"]] for t in todo)
    say(f"study {study_dir.name}: {len(tasks)} tasks ({len(done)} already done), "
        f"{len([t for t in tasks if t['kind'] == 'generator'])} generators; estimated "
        f"{format_duration(remaining / workers)} on {workers} {executor} worker(s) of "
        f"{cfg.threads_per_task} thread(s)" + (" (scaled by the finished tasks' times)" if done else ""))
    context = {"config": cfg.to_dict(), "out": str(out.resolve()), "data_dir": str(Path(data_dir).resolve()),
               "study_dir": str(study_dir.resolve())}
    if todo:
        schedule(ex, todo, done, context, study_dir, estimates)
    return finish_study(study_dir, cfg, tasks, finished_results(study_dir, tasks), say)


def schedule(ex, todo: list[dict], done: dict[str, dict], context: dict, study_dir: Path,
             estimates: dict[str, float]) -> None:
    """Keep every worker busy with the first tasks (in grid order) whose dependencies are done;
    record each result as it arrives. Only as many tasks as workers are handed out at a time, so
    a cell's classifiers run as soon as its generator is ready and the study finishes cell by cell
    (an interrupted study leaves whole cells, not every generator and no GAN classifier)."""
    waiting = {t["id"]: t for t in todo}
    running: dict = {}
    bar = progress_bar(total=round(sum(estimates[i] for i in waiting)), desc="study", unit="s", leave=True)
    try:
        while waiting or running:
            for tid, task in list(waiting.items()):
                deps = task["deps"]
                if not all(d in done for d in deps.values()):
                    continue
                if len(running) >= ex.workers and not any("error" in done[d] for d in deps.values()):
                    break
                del waiting[tid]
                failed = [d for d in deps.values() if "error" in done[d]]
                if failed:  # a generator or filter model failed: the dependent task cannot run
                    result = {"id": tid, "error": f"skipped: {failed[0]} failed ({done[failed[0]]['error']})"}
                    atomic_write_json(task_path(study_dir, tid), result)
                    done[tid] = result
                    bar.update(round(estimates[tid]))
                    continue
                task = {**task, "inputs": {k: done[d]["run_dir"] for k, d in deps.items()}}
                running[ex.submit(task, context)] = tid
            if not running:
                if waiting:  # cannot happen for a grid from expand(); guards against a hang
                    raise RuntimeError(f"study tasks with unmet dependencies: {sorted(waiting)[:3]}")
                continue
            for handle in ex.wait_any(list(running)):
                tid = running.pop(handle)
                result = ex.result(handle)
                atomic_write_json(task_path(study_dir, tid), result)
                started_path(study_dir, tid).unlink(missing_ok=True)  # recorded: no longer needed
                done[tid] = result
                bar.update(round(estimates[tid]))
    except BaseException:
        ex.shutdown(cancel=True)
        raise
    finally:
        bar.close()
    ex.shutdown()


# ---------------------------------------------------------------- outputs

def _csv(rows: list[dict], columns) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _relative(path: str, out: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(out.resolve()))
    except ValueError:
        return path


def generator_dir(task: dict, results: dict[str, dict], out: Path) -> str:
    """The run folder of the generator of a GAN classifier task's cell, while it holds that run."""
    dep = task["deps"].get("generator")
    run = recorded_run(results.get(dep, {}), "generators") if dep else None
    return _relative(str(run.results), out) if run else ""


def table_rows(cfg: StudyConfig, tasks: list[dict], results: dict[str, dict], out: Path):
    """(summary, per_class, generators, failures) rows, in task order."""
    summary, per_class, generators, failures = [], [], [], []
    for task in tasks:
        r = results.get(task["id"])
        if r is None:
            continue
        if "error" in r:
            failures.append({"task": task["id"], "error": r["error"]})
            continue
        m = r["metrics"]
        # only folders that still hold the recorded run (a restored study's may be gone or reused)
        run = recorded_run(r, task["kind"] + "s")
        run_dir = _relative(str(run.results), out) if run else ""
        if task["kind"] == "generator":
            generators.append({
                "study": cfg.name, "dataset": cfg.dataset, "fraction": task["fraction"],
                "seed": task["seed"], "generator": task["family"],
                **{k: m.get(k, "") for k in GENERATOR_COLUMNS[5:13]},
                "seconds": round(m["seconds"], 1), "precision": r.get("precision", ""),
                "run_dir": run_dir,
                "samples": str(run.results / f"samples.{cfg.plot_format}") if run else ""})
            continue
        v = task["variant"]
        ids = {"study": cfg.name, "dataset": cfg.dataset, "arch": task["arch"],
               "fraction": task["fraction"], "seed": task["seed"], "method": v["method"],
               "generator": v["generator"], "ratio": v["ratio"], "filter": v["filter"], "mode": v["mode"]}
        synthetic = r.get("synthetic") or {}
        summary.append({
            **ids, **{f"test_{k}": m["test"][k] for k in ("accuracy", "f1", "precision", "recall")},
            "val_accuracy": m["val"]["accuracy"], "n_real": r["counts"]["train"],
            "n_val": r["counts"]["val"],
            "n_synthetic": r["counts"]["synthetic"],
            "filter_kept": synthetic.get("acceptance_rate", "") if v["filter"] else "",
            "seconds": m["seconds"], "precision": r.get("precision", ""),
            "run_dir": run_dir,
            "generator_run_dir": generator_dir(task, results, out)})
        per_class += [{**ids, "class": name, "f1": f1} for name, f1 in m["test_per_class_f1"].items()]
    return summary, per_class, generators, failures


def finish_study(study_dir: Path, cfg: StudyConfig, tasks: list[dict], results: dict[str, dict], say) -> Path:
    """Tables, stats.json and the report of a finished study; the study is then no longer incomplete."""
    write_outputs(study_dir, study_dir, cfg, tasks, results, say)
    (study_dir / INCOMPLETE_MARKER).unlink(missing_ok=True)
    shutil.rmtree(study_dir / INTERIM_DIR, ignore_errors=True)  # the final report replaces it
    shutil.rmtree(study_dir / STARTED_DIR, ignore_errors=True)
    return study_dir


def interim_report(out: str | Path, study: str | bool, say=print) -> Path:
    """The report of the tasks a study has finished so far, in ``<study>/interim/``; runs nothing
    and reads only the task records, so it is safe while the study runs (or when it is paused)."""
    from .executors import default_workers

    study_dir, saved = open_study(Path(out), study, "to report on; give its folder")
    if not (study_dir / INCOMPLETE_MARKER).exists():
        raise UserError(f"{study_dir.name} has finished; its report is {study_dir / 'report.html'}")
    cfg = study_config_from_dict(saved["study"])
    tasks = expand(cfg)
    results = finished_results(study_dir, tasks)
    workers = default_workers(cfg.workers, cfg.threads_per_task)
    estimates = calibrated_estimates(cfg, tasks, results)
    left = sum(estimates[t["id"]] for t in tasks if t["id"] not in results) / workers
    started = sorted(t["id"] for t in tasks if t["id"] not in results and started_path(study_dir, t["id"]).is_file())
    say(f"study {study_dir.name}: {len(results)} of {len(tasks)} tasks finished; about "
        f"{format_duration(left)} left on {workers} worker(s) (scaled by the finished tasks' times)")
    if started:  # running now, or interrupted (then --resume continues their runs)
        say(f"started, not finished: {', '.join(started)}")
    target = study_dir / INTERIM_DIR
    target.mkdir(exist_ok=True)
    write_outputs(study_dir, target, cfg, tasks, results, say)
    return target


def write_outputs(study_dir: Path, target: Path, cfg: StudyConfig, tasks: list[dict],
                  results: dict[str, dict], say) -> None:
    """summary.csv, per_class.csv, generators.csv, failures.csv, stats.json and the report of the
    recorded ``results`` of the study in ``study_dir``, written into ``target``."""
    from .report import write_report
    from .stats import write_stats

    saved = read_json(study_dir / "config.json")
    out = Path(saved["out"])
    summary, per_class, generators, failures = table_rows(cfg, tasks, results, out)
    if not summary:
        raise UserError(f"no classifier of study {study_dir.name} finished: "
                        + (failures[0]["error"] if failures else "nothing ran"))
    atomic_write_text(target / "summary.csv", _csv(summary, SUMMARY_COLUMNS))
    atomic_write_text(target / "per_class.csv", _csv(per_class, tuple(per_class[0]) if per_class else ("class",)))
    atomic_write_text(target / "generators.csv", _csv(generators, GENERATOR_COLUMNS))
    atomic_write_text(target / "failures.csv", _csv(failures, ("task", "error")))
    stats = write_stats(target, progress={"finished": len(results), "total": len(tasks)})
    write_report(target, stats, plot_format=cfg.plot_format)
    for h in stats["headlines"]:
        say(h["sentence"])
    if failures:
        say(f"{len(failures)} task(s) failed; see failures.csv")
    say(f"report: {target / 'report.html'}")
