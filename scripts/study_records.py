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
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ganaug.runs import INCOMPLETE_MARKER, atomic_write_json, read_json  # noqa: E402
from ganaug.study import TASKS_DIR, recorded_run  # noqa: E402


def save(study_dir: Path, dest: Path) -> int:
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
    return count


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
    too, so the restored study never reads or writes the machine it came from: its lost generators
    are trained again there on resume."""
    config = read_json(src / "config.json")
    study_dir = out.resolve() / "results" / "studies" / config.pop("name")
    if study_dir.exists():
        raise SystemExit(f"error: {study_dir} exists; restore into another --out")
    finished = config.pop("finished")
    old, new = config["out"], str(out.resolve())
    config["out"] = new
    if data_dir:
        config["data_dir"] = str(Path(data_dir).resolve())
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
    r = sub.add_parser("restore", help="recreate the study folder under OUT from saved records")
    r.add_argument("src", type=Path)
    r.add_argument("out", type=Path)
    r.add_argument("--data-dir", default=None, help="where the data set lives now")
    args = parser.parse_args()
    if args.command == "save":
        print(f"saved {save(args.study_dir, args.dest)} task records to {args.dest}")
    else:
        print(restore(args.src, args.out, args.data_dir))


if __name__ == "__main__":
    main()
