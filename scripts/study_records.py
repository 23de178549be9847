"""Carry a long study between machines as its small task records (no run folders, no models).

A study records every finished task atomically in ``tasks/<id>.json``; ``ganaug study --resume``
skips those and trains again any finished generator whose run folder is missing, with the same seed
and therefore the same weights. So the records alone are enough to continue a study elsewhere, or
after the machine that ran it is gone::

    python scripts/study_records.py save "results/studies/standard Run 1" docs/studies/standard
    python scripts/study_records.py restore docs/studies/standard OUT     # prints the study folder
    ganaug study --resume "OUT/results/studies/standard Run 1" --out OUT

``save`` drops each classifier's per-epoch histories (the report does not use it; it is still in
the run folder's metrics.json) and keeps everything ``summary.csv`` and ``stats.json`` are made from;
a record without the precision its task trained in gets it from the run folder's config.json.
It also keeps, in ``runs/``, the few runs whose saved model a task not yet recorded still needs (the
generator of a cell the study was in the middle of; a few MB each, without checkpoints or ONNX files),
so that ``restore`` puts them back and the resumed study does not train them again
(``--no-models``: records only).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ganaug.runs import INCOMPLETE_MARKER, atomic_write_json, read_json  # noqa: E402
from ganaug.study_config import study_config_from_dict  # noqa: E402
from ganaug.study_tasks import TASKS_DIR, expand, finished_results, needed_inputs, recorded_run  # noqa: E402

RUNS_DIR = "runs"  # saved runs, laid out as under the study's --out (results/..., models/...)
LEFT_OUT = {"checkpoint.pt", "model.onnx", "generator.onnx", "tensorboard"}  # not needed to use a run


def save(study_dir: Path, dest: Path, models: bool = True) -> int:
    if not (study_dir / "config.json").is_file():
        raise SystemExit(f"error: {study_dir} is not a study folder")
    (dest / TASKS_DIR).mkdir(parents=True, exist_ok=True)
    config = read_json(study_dir / "config.json")
    config["name"] = study_dir.name
    config["finished"] = not (study_dir / INCOMPLETE_MARKER).exists()
    atomic_write_json(dest / "config.json", config)
    count = 0
    for path in sorted((study_dir / TASKS_DIR).glob("*.json")):
        record = read_json(path)
        metrics = record.get("metrics", {})
        for key in [k for k in metrics if k == "history" or k.endswith("_history")]:
            del metrics[key]  # per-epoch curves (also pretrain_history): in the run folder, unused here
        if "precision" not in record and "run_dir" in record:
            # a task recorded by a ganaug that did not keep its precision: its run folder, where it
            # still exists, says which one it trained in. After a restore a new run can have taken
            # the folder name of a recorded one, so the folder must be that run (same timing and outcome).
            run = recorded_run(record, "generators" if record["id"].startswith("gen-") else "classifiers")
            if run is not None and (run.results / "config.json").is_file():
                record["precision"] = read_json(run.results / "config.json").get("precision_resolved", "")
        atomic_write_json(dest / TASKS_DIR / path.name, record)
        count += 1
    shutil.rmtree(dest / RUNS_DIR, ignore_errors=True)  # what an earlier save kept may be done with
    if models:
        save_needed_runs(study_dir, config, dest / RUNS_DIR)
    return count


def save_needed_runs(study_dir: Path, config: dict, dest: Path) -> list[str]:
    """Copy the runs whose model a task not yet recorded needs into ``dest``, laid out as under
    the study's --out; only runs that still hold the recorded run. Returns their task ids."""
    tasks = expand(study_config_from_dict(config["study"]))
    done = finished_results(study_dir, tasks)
    kinds = {t["id"]: t["kind"] + "s" for t in tasks}
    out = Path(config["out"])
    kept = []
    for tid in needed_inputs(tasks, done):
        run = recorded_run(done[tid], kinds[tid])
        if run is None:
            continue  # gone already: the resumed study trains it again
        for folder in (run.results, run.models):
            shutil.copytree(folder, dest / folder.relative_to(out),
                            ignore=lambda _dir, names: [n for n in names if n in LEFT_OUT])
        kept.append(tid)
    return kept


def moved(obj, old: str, new: str):
    """``obj`` with every path under the folder ``old`` moved under ``new``."""
    if isinstance(obj, dict):
        return {k: moved(v, old, new) for k, v in obj.items()}
    if isinstance(obj, list):
        return [moved(v, old, new) for v in obj]
    if isinstance(obj, str) and (obj == old or obj.startswith(old + "/")):
        return new + obj[len(old):]
    return obj


def restore(src: Path, out: Path, data_dir: str | None) -> Path:
    """Recreate the study folder under ``out``. The records' run folders are moved under ``out``
    too, so the restored study never reads or writes the machine it came from: the runs saved with
    the records are put back there, and any other generator an unfinished task needs is trained
    again on resume."""
    config = read_json(src / "config.json")
    study_dir = out.resolve() / "results" / "studies" / config.pop("name")
    if study_dir.exists():
        raise SystemExit(f"error: {study_dir} exists; restore into another --out")
    finished = config.pop("finished")
    old, new = config["out"], str(out.resolve())
    config["out"] = new
    if data_dir:
        config["data_dir"] = str(Path(data_dir).resolve())
    runs = sorted(p for p in (src / RUNS_DIR).glob("*/*/*") if p.is_dir())  # results|models/<kind>/<run>
    taken = [out.resolve() / p.relative_to(src / RUNS_DIR) for p in runs]
    if any(p.exists() for p in taken):
        raise SystemExit(f"error: {next(p for p in taken if p.exists())} exists; restore into another --out")
    for path, target in zip(runs, taken):  # runs a task still needs: not trained again on resume
        shutil.copytree(path, target)
        for name in ("config.json", "metrics.json"):
            if (target / name).is_file():
                atomic_write_json(target / name, moved(read_json(target / name), old, new))
    (study_dir / TASKS_DIR).mkdir(parents=True)
    for path in sorted((src / TASKS_DIR).glob("*.json")):
        atomic_write_json(study_dir / TASKS_DIR / path.name, moved(read_json(path), old, new))
    atomic_write_json(study_dir / "config.json", config)
    recorded = {path.stem for path in (study_dir / TASKS_DIR).glob("*.json")}
    if not finished or set(config["tasks"]) - recorded:  # a record missing: not finished
        (study_dir / INCOMPLETE_MARKER).write_text("")
    return study_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("save", help="copy a study folder's records to DEST")
    s.add_argument("study_dir", type=Path)
    s.add_argument("dest", type=Path)
    s.add_argument("--no-models", action="store_true",
                   help="records only, not the runs whose model an unfinished task needs")
    r = sub.add_parser("restore", help="recreate the study folder under OUT from saved records")
    r.add_argument("src", type=Path)
    r.add_argument("out", type=Path)
    r.add_argument("--data-dir", default=None, help="where the data set lives now")
    args = parser.parse_args()
    if args.command == "save":
        count = save(args.study_dir, args.dest, models=not args.no_models)
        runs = len([p for p in (args.dest / RUNS_DIR).glob("results/*/*")])
        print(f"saved {count} task records and {runs} run(s) still needed to {args.dest}")
    else:
        print(restore(args.src, args.out, args.data_dir))


if __name__ == "__main__":
    main()
