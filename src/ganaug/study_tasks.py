"""A study's tasks: the grid expanded into one task per generator and classifier, running one
task (or continuing the run a killed attempt left), and the task records of a study folder.

Each finished task is recorded atomically in ``tasks/<id>.json``; ``started/<id>.json`` names
the run folder of a task that is training, so a study killed mid-task continues that run.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from .errors import UserError
from .runs import INCOMPLETE_MARKER, atomic_write_json, finished_run, read_json, resolve_run
from .study_config import (StudyConfig, Variant, approx_train_size, classifier_config, generator_config,
                           study_config_from_dict)

TASKS_DIR = "tasks"
# Tasks that have a run folder but no record yet: ``started/<id>.json`` names the folder, so a study
# killed mid-task continues that run in its own folder (from its last checkpoint) on --resume.
STARTED_DIR = "started"


# ---------------------------------------------------------------- the grid as tasks

def generator_task_id(cfg: StudyConfig, fraction: float, seed: int, family: str) -> str:
    return f"gen-{cfg.dataset}-f{fraction:g}-s{seed}-{family}"


def classifier_task_id(cfg: StudyConfig, arch: str, fraction: float, seed: int, v: Variant) -> str:
    return f"cls-{cfg.dataset}-{arch}-f{fraction:g}-s{seed}-{v.tag()}"


def expand(cfg: StudyConfig) -> list[dict]:
    """Every task of the study, in a fixed order (generators of a cell before its classifiers)."""
    tasks = []
    for fraction in cfg.fractions:
        for seed in range(cfg.seeds):
            for family in cfg.families(fraction):
                tasks.append({"id": generator_task_id(cfg, fraction, seed, family), "kind": "generator",
                              "fraction": fraction, "seed": seed, "family": family, "deps": {}})
            for arch in cfg.archs:
                real_id = classifier_task_id(cfg, arch, fraction, seed, Variant("real"))
                for v in cfg.variants(fraction):
                    deps = {}
                    if v.uses_gan:
                        deps["generator"] = generator_task_id(cfg, fraction, seed, v.generator)
                    if v.filter:
                        deps["filter"] = real_id
                    tasks.append({"id": classifier_task_id(cfg, arch, fraction, seed, v),
                                  "kind": "classifier", "arch": arch, "fraction": fraction,
                                  "seed": seed, "variant": v.__dict__, "deps": deps})
    return tasks


# ---------------------------------------------------------------- running one task

def run_task(task: dict, context: dict) -> dict:
    """Train what ``task`` describes into the study's --out; return its record.

    A user error inside a task (e.g. a filter that keeps no synthetic image) is recorded as the
    task's result instead of stopping the study; the report lists it. A task that a killed study
    had started continues its own run (see ``started_run``): same seed and data, so the same
    weights and numbers as a run that was never interrupted.
    """
    cfg = study_config_from_dict(context["config"])
    start = time.perf_counter()
    claim = started_path(Path(context["study_dir"]), task["id"]) if context.get("study_dir") else None

    def on_start(run) -> None:
        if claim is not None:
            atomic_write_json(claim, {"run_dir": str(run.results)})

    partial = started_run(claim, task) if claim is not None else None
    train, resume, result_of = _trainer(task["kind"])
    try:
        if partial is None:
            result = train(_task_config(cfg, task), context["data_dir"], context["out"], on_start=on_start)
        elif (partial.results / INCOMPLETE_MARKER).exists():
            result = resume(partial.results)
        else:  # it finished, but the study was killed before recording it
            result = result_of(partial, read_json(partial.results / "metrics.json"))
        config = read_json(result.run.results / "config.json")
    except UserError as exc:
        return {"id": task["id"], "error": str(exc), "seconds": time.perf_counter() - start}
    record = {"id": task["id"], "run_dir": str(result.run.results), "metrics": result.metrics}
    if task["kind"] == "classifier":
        record.update(counts=config["counts"], synthetic=config["synthetic"])
    return {**record, "precision": config["precision_resolved"], "seconds": time.perf_counter() - start}


def _trainer(kind: str):
    """(train, resume, result type) of a task kind; imported here, so a study's main process
    and its workers import only what they run."""
    if kind == "generator":
        from .train_generator import GeneratorResult, resume_generator, train_generator

        return train_generator, resume_generator, GeneratorResult
    from .train_classifier import ClassifierResult, resume_classifier, train_classifier

    return train_classifier, resume_classifier, ClassifierResult


def _task_config(cfg: StudyConfig, task: dict):
    if task["kind"] == "generator":
        return generator_config(cfg, task, approx_train_size(cfg, task["fraction"]))
    return classifier_config(cfg, task, task.get("inputs", {}))


def started_path(study_dir: Path, task_id: str) -> Path:
    return study_dir / STARTED_DIR / f"{task_id}.json"


def started_run(claim: Path, task: dict):
    """The run folder an earlier, killed attempt at ``task`` trained in, if it is still there and
    is that task's run (its config.json has the task's data set part and seed, and its family or
    architecture); else None, and the task starts a new run. A noted folder that was killed
    before it wrote its config.json holds nothing but its INCOMPLETE marker: it is removed."""
    if not claim.is_file():
        return None
    kind = task["kind"] + "s"
    try:
        run = resolve_run(read_json(claim)["run_dir"], kind)
    except (UserError, KeyError, OSError, ValueError):
        return None
    if not (run.results / "config.json").exists():
        for folder in (run.results, run.models):
            if folder.is_dir() and all(p.name == INCOMPLETE_MARKER or p.name.startswith(".") for p in folder.iterdir()):
                shutil.rmtree(folder)
        return None
    try:
        config = read_json(run.results / "config.json")
    except (UserError, OSError, ValueError):
        return None
    if not (run.results / INCOMPLETE_MARKER).exists() and _finished_with_metrics(run.results, kind) is None:
        return None  # finished, but its saved model or metrics are gone
    name = task["family"] if task["kind"] == "generator" else task["arch"]
    same = (config.get("arch"), config.get("seed"), config.get("fraction")) == (name, task["seed"], task["fraction"])
    return run if same else None


def _finished_with_metrics(run_dir, kind: str):
    """``finished_run``, and its metrics.json is there too (a study reads its numbers from it)."""
    run = finished_run(run_dir, kind)
    return run if run is not None and (run.results / "metrics.json").is_file() else None


# ---------------------------------------------------------------- task records

def task_path(study_dir: Path, task_id: str) -> Path:
    return study_dir / TASKS_DIR / f"{task_id}.json"


def finished_results(study_dir: Path, tasks: list[dict]) -> dict[str, dict]:
    out = {}
    for task in tasks:
        path = task_path(study_dir, task["id"])
        if path.is_file():
            out[task["id"]] = read_json(path)
    return out


# What identifies a finished run in its metrics.json: its timing and its training outcome (the
# generator's final losses, the classifier's selected epoch and scores). Metrics that
# `ganaug evaluate-generator` recomputes in place (Fréchet distance, coverage, ...) are not among them.
RUN_IDENTITY_KEYS = ("seconds", "steps", "final_losses", "best_epoch", "val", "test")


def recorded_run(record: dict, kind: str):
    """The finished run folder of a task's record, if the folder still holds *that* run: after a
    study is restored from its records elsewhere, a new run can take a recorded run's folder name
    (the first free ``Run <i>``), so a folder of that name is the recorded run only if its
    metrics.json has the record's timing and training outcome (timing alone is rounded to 10 ms,
    and two short runs can share it). Else None."""
    run = _finished_with_metrics(record["run_dir"], kind) if record.get("run_dir") else None
    if run is None:
        return None
    recorded = record.get("metrics", {})
    if "seconds" not in recorded:
        return None
    found = read_json(run.results / "metrics.json")
    same = all(found.get(key) == recorded[key] for key in RUN_IDENTITY_KEYS if key in recorded)
    return run if same else None


def needed_inputs(tasks: list[dict], done: dict[str, dict]) -> list[str]:
    """Recorded tasks whose saved model an unfinished (or failed) task still needs: a generator,
    or the real-data classifier a confidence filter uses."""
    open_tasks = [t for t in tasks if t["id"] not in done or "error" in done[t["id"]]]
    needed = {dep for t in open_tasks for dep in t["deps"].values()}
    return [tid for tid in sorted(needed) if tid in done and "error" not in done[tid]]


def lost_inputs(tasks: list[dict], done: dict[str, dict]) -> tuple[list[str], list[str]]:
    """Needed inputs (``needed_inputs``) whose run is gone, e.g. a study folder carried to another
    machine without its runs; and the failed tasks that needed one of them. Both are run again:
    same seed and subset, so the same weights and numbers."""
    kinds = {t["id"]: t["kind"] for t in tasks}
    lost = [tid for tid in needed_inputs(tasks, done) if recorded_run(done[tid], kinds[tid] + "s") is None]
    retry = sorted(t["id"] for t in tasks if t["id"] in done and "error" in done[t["id"]]
                   and set(t["deps"].values()) & set(lost))
    return lost, retry


