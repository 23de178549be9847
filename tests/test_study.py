"""`ganaug study`: the grid, presets and TOML, then real smoke studies end to end — local,
killed and resumed, and on a local Ray instance — which must all agree."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import DATA_DIR, assert_user_error, cli_env, ganaug
from ganaug.errors import UserError
from ganaug.study_tasks import expand
from ganaug.study_time import calibrate
from ganaug.study_config import PRESETS, StudyConfig, load_study_config

SMOKE = ("study", "--preset", "smoke", "--data-dir", str(DATA_DIR))
TIMING_KEYS = {"seconds", "seconds_mean", "run_dir", "samples", "path"}


def study_dirs(out: Path) -> list[Path]:
    return sorted((out / "results" / "studies").glob("smoke Run *"))


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def without_timing(obj):
    """stats.json minus what legitimately differs between two runs: durations and folder names.
    Floats are compared to 10 significant digits: the accuracies agree exactly, but a generator's
    Fréchet distance (a matrix square root in scipy) can differ in its 15th digit between a Ray
    worker and a local one."""
    if isinstance(obj, dict):
        return {k: without_timing(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [without_timing(v) for v in obj]
    if isinstance(obj, float):
        return float(f"{obj:.10g}")
    return obj


# ---------------------------------------------------------------- configuration and grid

def test_presets_are_valid_and_quick_is_the_default():
    assert load_study_config(None, None) == PRESETS["quick"]
    assert PRESETS["standard"].fractions == (0.01, 0.05, 0.1, 1.0)
    assert PRESETS["standard"].ratios == (0.5, 1.0, 2.0) and PRESETS["standard"].seeds == 5
    assert PRESETS["full"].archs == ("shallow", "deep", "cnn", "transfer")


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    proc = ganaug("study", "--preset", "standard", "--dry-run", "--out", tmp_path, "--data-dir", DATA_DIR)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "study standard: 220 tasks on fashion-mnist, 5 seeds, archs cnn"
    assert lines[1].startswith("  0.01: 55 classifiers, 10 generators (acgan, cgan), 11 methods per seed")
    assert lines[3].startswith("  0.1: 40 classifiers, 5 generators (acgan), 8 methods per seed")
    assert lines[4].startswith("  1: 40 classifiers, 5 generators (acgan), 8 methods per seed")
    assert lines[-1].startswith("estimated ") and " h on " in lines[-1]
    assert list(tmp_path.iterdir()) == []
    assert_user_error(ganaug("study", "--dry-run", "--resume", "--out", tmp_path), "--dry-run")
    assert_user_error(ganaug("study", "--workers", "0", "--out", tmp_path), "--workers")


def test_toml_overrides_the_preset(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('preset = "smoke"\nname = "mine"\nseeds = 4\nratios = [0.5, 2]\n'
                    '[classifier]\nbatch_size = 64\n')
    cfg = load_study_config(None, str(path))
    assert (cfg.name, cfg.seeds, cfg.ratios) == ("mine", 4, (0.5, 2.0))
    assert cfg.classifier == {**PRESETS["smoke"].classifier, "batch_size": 64}
    assert cfg.optim_for("cnn").batch_size == 64


@pytest.mark.parametrize("text, fragment", [
    ("seeds = 0\n", "seeds"), ("fractions = [2.0]\n", "fractions"), ("nope = 1\n", "unknown"),
    ("family = 'vae'\n", "family"), ("[classifier]\nlearning = 1\n", "classifier"),
    ("seeds = \n", "not valid TOML")])
def test_bad_toml_is_a_user_error(tmp_path, text, fragment):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UserError, match=fragment):
        load_study_config(None, str(path))
    assert_user_error(ganaug("study", "--config", path, "--out", tmp_path), fragment)


def test_grid_pairs_methods_and_shares_generators():
    cfg = StudyConfig(name="g", fractions=(0.01, 0.1), seeds=2, ratios=(0.5, 1.0), family="cdcgan",
                      lever_families=("cgan",), lever_filters=(0.9,), lever_modes=("pretrain",),
                      lever_fractions=(0.01,))
    tasks = expand(cfg)
    ids = [t["id"] for t in tasks]
    assert len(ids) == len(set(ids))
    gens = [t for t in tasks if t["kind"] == "generator"]
    # one generator per (fraction, seed, family); the lever family only where levers run
    assert sorted((t["fraction"], t["seed"], t["family"]) for t in gens) == sorted(
        [(0.01, s, f) for s in (0, 1) for f in ("cdcgan", "cgan")] + [(0.1, s, "cdcgan") for s in (0, 1)])
    classifiers = [t for t in tasks if t["kind"] == "classifier"]
    at_1pct = [t for t in classifiers if t["fraction"] == 0.01 and t["seed"] == 0]
    # real, classical, 2 ratios x (gan, gan+classical), + family, filter and pretrain levers
    assert len(at_1pct) == 2 + 4 + 3
    filtered = [t for t in at_1pct if t["variant"]["filter"]]
    assert filtered[0]["deps"]["filter"].endswith("-real")
    for t in classifiers:  # every dependency is a task of the study, trained on the same cell
        for dep in t["deps"].values():
            assert dep in ids and f"-f{t['fraction']:g}-s{t['seed']}-" in dep
    order = {tid: i for i, tid in enumerate(ids)}
    assert all(order[d] < order[t["id"]] for t in classifiers for d in t["deps"].values())


def test_a_resumed_study_estimates_from_the_times_it_measured():
    """The ETA of a resumed study scales each kind of task by how long its finished ones took
    against their estimates — the median, so one task stretched by a paused machine does not
    skew it, and a failed task says nothing about speed; with nothing done it is the estimate."""
    tasks = expand(PRESETS["smoke"])
    estimates = {t["id"]: 10.0 for t in tasks}
    gens = [t["id"] for t in tasks if t["kind"] == "generator"]
    classifiers = [t["id"] for t in tasks if t["kind"] == "classifier"]
    done = {gens[0]: {"seconds": 30.0}, classifiers[0]: {"seconds": 4.0}, classifiers[1]: {"seconds": 5.0},
            classifiers[2]: {"seconds": 900.0}, classifiers[3]: {"error": "a filter kept no image", "seconds": 0.5}}
    got = calibrate(estimates, tasks, done)
    assert {got[i] for i in gens} == {30.0} and {got[i] for i in classifiers} == {5.0}
    assert calibrate(estimates, tasks, {}) == estimates


# ---------------------------------------------------------------- real smoke studies

@pytest.fixture(scope="module")
def smoke_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    proc = ganaug(*SMOKE, "--workers", "1", "--out", out, timeout=900)
    assert proc.returncode == 0, proc.stderr
    (folder,) = study_dirs(out)
    return out, folder, proc


def test_smoke_study_writes_the_complete_study_folder(smoke_study):
    out, folder, proc = smoke_study
    for name in ("report.html", "report.md", "summary.csv", "stats.json", "per_class.csv",
                 "generators.csv", "config.json", "accuracy_vs_fraction.png"):
        assert (folder / name).is_file(), name
    assert not (folder / "INCOMPLETE").exists()
    # one worker gets one task at a time, the first ready one in grid order: the study finishes
    # cell by cell (a seed's GAN classifiers before the next seed's generator), so an interrupted
    # study leaves whole cells
    finished = sorted((folder / "tasks").glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
    assert [p.stem for p in finished] == [t["id"] for t in expand(PRESETS["smoke"])]
    rows = read_rows(folder / "summary.csv")
    cfg = PRESETS["smoke"]
    # one row per trained classifier: seeds x (real, classical, gan, gan+classical)
    assert len(rows) == cfg.seeds * 4
    assert {r["method"] for r in rows} == {"real", "classical", "gan", "gan+classical"}
    for r in rows:
        assert 0 < float(r["test_accuracy"]) <= 1
        run = out / r["run_dir"]
        assert (run / "metrics.json").is_file() and not (run / "INCOMPLETE").exists()
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["test"]["accuracy"] == pytest.approx(float(r["test_accuracy"]))
        assert r["precision"] == json.loads((run / "config.json").read_text())["precision_resolved"]
        if r["method"].startswith("gan"):
            assert int(r["n_synthetic"]) == int(r["n_real"])  # ratio 1
            assert (out / r["generator_run_dir"] / "samples.png").is_file()
    # paired: the same seed trains every method on the same real subset (0.5% = 300 labelled
    # images: 270 to train on, a stratified 10% = 30 to validate on)
    for seed in range(cfg.seeds):
        assert {(r["n_real"], r["n_val"]) for r in rows if r["seed"] == str(seed)} == {("270", "30")}
    gens = read_rows(folder / "generators.csv")
    assert len(gens) == cfg.seeds and all(float(g["fd_domain"]) > 0 for g in gens)
    stats = json.loads((folder / "stats.json").read_text())
    html = (folder / "report.html").read_text()
    assert list(stats["precision"].values()) == [len(rows)]  # one machine: one precision, no caveat
    assert "Mixed numerics" not in html
    sentence = stats["headlines"][0]["sentence"]
    assert sentence.startswith("At 0.5% of the data")
    assert sentence in html and sentence in (folder / "report.md").read_text()
    assert "http://" not in html and "https://" not in html
    assert sentence in proc.stdout and "estimated" in proc.stdout


def test_a_study_keeps_its_recipe_when_the_defaults_change(smoke_study, monkeypatch):
    """config.json holds the complete training settings the study started with, so resuming it
    under a ganaug whose defaults have changed since still trains with the original recipe."""
    from dataclasses import replace

    from ganaug.config import CLASSIFIER_DEFAULTS
    from ganaug.gan_config import GENERATOR_DEFAULTS
    from ganaug.study_config import study_config_from_dict

    _, folder, _ = smoke_study
    saved = json.loads((folder / "config.json").read_text())["study"]
    recipe = saved["generator_recipes"]["cgan"]
    assert recipe["epochs"] == 2 and recipe["min_steps"] == 0  # the smoke preset's overrides, applied
    assert saved["classifier_recipes"]["cnn"]["lr"] == CLASSIFIER_DEFAULTS["cnn"].lr
    cfg = study_config_from_dict(saved)
    monkeypatch.setitem(GENERATOR_DEFAULTS, "cgan", replace(GENERATOR_DEFAULTS["cgan"], lr_g=0.5))
    monkeypatch.setitem(CLASSIFIER_DEFAULTS, "cnn", replace(CLASSIFIER_DEFAULTS["cnn"], lr=0.5))
    assert cfg.gan_optim("cgan", 100).lr_g == recipe["lr_g"] != 0.5
    assert cfg.optim_for("cnn").lr == saved["classifier_recipes"]["cnn"]["lr"] != 0.5
    assert PRESETS["smoke"].gan_optim("cgan", 100).lr_g == 0.5  # a config not yet started follows them


@pytest.mark.slow
def test_killed_study_resumes_to_the_same_numbers(smoke_study, tmp_path):
    _, reference, _ = smoke_study
    script = Path(__import__("sys").executable).with_name("ganaug")
    proc = subprocess.Popen([str(script), *SMOKE, "--out", str(tmp_path)], env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    study = tmp_path / "results" / "studies" / "smoke Run 1"

    def noted() -> dict[str, Path]:
        """The run folders of started, unrecorded tasks (started/<id>.json), by task id."""
        runs = {}
        for path in study.glob("started/*.json"):
            try:  # the study deletes a task's note once it has recorded the task
                runs[path.stem] = Path(json.loads(path.read_text())["run_dir"])
            except FileNotFoundError:
                continue
        return runs

    def in_flight() -> dict[str, Path]:
        """Noted runs that are training: configured, not finished."""
        return {tid: run for tid, run in noted().items()
                if (run / "INCOMPLETE").exists() and (run / "config.json").exists()}

    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:  # wait for some, but not all, tasks to be recorded ...
        done = list(study.glob("tasks/*.json"))
        if (len(done) >= 3 and in_flight()) or proc.poll() is not None:  # ... and one mid-run
            break
        time.sleep(0.1)
    assert proc.poll() is None, "the study finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (folder,) = study_dirs(tmp_path)
    assert (folder / "INCOMPLETE").exists() and not (folder / "report.html").exists()
    recorded = {p.name for p in (folder / "tasks").glob("*.json")}
    interrupted = in_flight()
    assert interrupted
    # A worker killed between creating its run folder and noting it (a few file operations) leaves
    # that folder empty but for its INCOMPLETE marker; nothing is lost with it. A noted folder
    # killed before its config.json was written is removed on resume and the task starts anew.
    names = {run.name for run in noted().values()}
    unnoted = [run for run in tmp_path.glob("results/*/*") if run.parent.name != "studies"
               and run.name not in names and not (run / "config.json").exists()]
    assert all({p.name for p in run.iterdir()} <= {"INCOMPLETE"} for run in unnoted)
    interim = ganaug("study", "--interim", "--out", tmp_path)
    assert interim.returncode == 0, interim.stderr
    assert all(tid in interim.stdout.split("started, not finished: ")[1] for tid in interrupted)
    resumed = ganaug("study", "--resume", "--workers", "1", "--out", tmp_path, timeout=900)
    assert resumed.returncode == 0, resumed.stderr
    assert f"({len(recorded)} already done)" in resumed.stdout
    assert "on 1 local worker(s)" in resumed.stdout  # --workers changes the speed, not the numbers
    assert study_dirs(tmp_path) == [folder]  # continued in the same folder
    got = json.loads((folder / "stats.json").read_text())
    want = json.loads((reference / "stats.json").read_text())
    assert without_timing(got) == without_timing(want)
    # the runs the kill interrupted were continued in their own folders, not abandoned for new ones
    runs = list(tmp_path.glob("results/generators/*")) + list(tmp_path.glob("results/classifiers/*"))
    assert len(runs) == len(expand(PRESETS["smoke"])) + len(unnoted)
    assert sorted(run for run in runs if (run / "INCOMPLETE").exists() or not (run / "config.json").exists()) \
        == sorted(unnoted)
    rows = read_rows(folder / "summary.csv") + read_rows(folder / "generators.csv")
    assert {str(run.relative_to(tmp_path)) for run in interrupted.values()} <= {r["run_dir"] for r in rows}
    assert not (folder / "started").exists()


def test_saved_records_restore_and_resume_to_the_same_numbers(smoke_study, tmp_path):
    """scripts/study_records.py: a study carried as its task records alone (history stripped)
    is recreated under another --out and resumed to the same statistics. Its run folders stayed
    behind, so each finished generator that an unfinished classifier needs is trained again
    (same seed, same weights) before that classifier."""
    import sys

    out, reference, _ = smoke_study
    script = Path(__file__).resolve().parents[1] / "scripts" / "study_records.py"
    saved = tmp_path / "records"
    proc = subprocess.run([sys.executable, script, "save", reference, saved], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    records = sorted((saved / "tasks").glob("*.json"))
    assert len(records) == len(list((reference / "tasks").glob("*.json")))
    assert all("history" not in json.loads(p.read_text()).get("metrics", {}) for p in records)
    assert {json.loads(p.read_text())["precision"] for p in records} <= {"fp32", "bf16"}
    # a record written before tasks kept their precision gets it from its run folder's config.json
    legacy = tmp_path / "legacy" / "smoke Run 1"
    (legacy / "tasks").mkdir(parents=True)
    (legacy / "config.json").write_text((reference / "config.json").read_text())
    record = json.loads(records[0].read_text())
    ran_in = record.pop("precision")
    (legacy / "tasks" / records[0].name).write_text(json.dumps(record))
    proc = subprocess.run([sys.executable, script, "save", legacy, tmp_path / "legacy records"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "legacy records" / "tasks" / records[0].name).read_text())["precision"] == ran_in
    for path in saved.glob("tasks/cls-*-s1-gan-*.json"):
        path.unlink()
    proc = subprocess.run([sys.executable, script, "restore", saved, tmp_path / "elsewhere"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    folder = Path(proc.stdout.strip())
    assert folder == (tmp_path / "elsewhere" / "results" / "studies" / reference.name).resolve()
    # The seed-0 generator's record names the first generator folder (which seed got "Run 1" in the
    # reference study depends on which of its two workers started first): the seed-1 generator,
    # retrained below, is the first generator run under elsewhere/ and takes that name.
    elsewhere = tmp_path / "elsewhere"
    seed0_path = folder / "tasks" / "gen-fashion-mnist-f0.005-s0-cgan.json"
    seed0 = json.loads(seed0_path.read_text())
    seed0["run_dir"] = str(elsewhere.resolve() / "results" / "generators" / "CGANOriginalGenerator Run 1")
    seed0_path.write_text(json.dumps(seed0))
    # an interim report of the unfinished study: what is done so far, marked as such
    interim = ganaug("study", "--interim", "--out", tmp_path / "elsewhere")
    assert interim.returncode == 0, interim.stderr
    finished, total = len(list((folder / "tasks").glob("*.json"))), len(records)
    assert f"{finished} of {total} tasks finished" in interim.stdout and finished < total
    part = json.loads((folder / "interim" / "stats.json").read_text())
    assert part["progress"] == {"finished": finished, "total": total}
    assert part["n_classifiers"] == sum(p.name.startswith("cls-") for p in (folder / "tasks").iterdir())
    assert f"Interim report: {finished} of {total} tasks" in (folder / "interim" / "report.md").read_text()
    assert "Interim report" in (folder / "interim" / "report.html").read_text()
    assert (folder / "INCOMPLETE").exists() and not (folder / "report.html").exists()
    resumed = ganaug("study", "--resume", folder, "--out", tmp_path / "elsewhere", timeout=900)
    assert resumed.returncode == 0, resumed.stderr
    assert "1 finished generator(s) have lost their run folder" in resumed.stdout
    assert "gen-fashion-mnist-f0.005-s1-cgan" in resumed.stdout
    got = json.loads((folder / "stats.json").read_text())
    want = json.loads((reference / "stats.json").read_text())
    assert without_timing(got) == without_timing(want)
    assert got["progress"] == {"finished": total, "total": total}
    # The retrained seed-1 generator took the folder name the seed-0 record names (its run stayed
    # behind): the tables and the report show only folders that hold the recorded run, so seed 0
    # shows none rather than seed 1's samples.
    gens = {row["seed"]: row for row in csv.DictReader((folder / "generators.csv").open())}
    assert Path(seed0["run_dir"]).is_dir()  # the name is taken ...
    assert gens["0"]["run_dir"] == gens["0"]["samples"] == ""  # ... by another run
    assert json.loads((elsewhere / gens["1"]["run_dir"] / "config.json").read_text())["seed"] == 1
    assert gens["1"]["samples"].endswith("samples.png")
    assert "cgan at 0.5% of fashion-mnist (seed 1)" in (folder / "report.md").read_text()
    assert not (folder / "interim").exists()  # the final report replaced the interim one
    assert "Interim" not in (folder / "report.md").read_text()
    again = ganaug("study", "--interim", folder, "--out", tmp_path / "elsewhere")
    assert again.returncode == 2 and "has finished; its report is" in again.stderr


def test_a_started_task_continues_its_own_run_only(tmp_path):
    """started/<id>.json names the run folder a task trains in. On resume the task continues that
    run if it is the task's own; a noted folder killed before its config.json was written holds
    only its INCOMPLETE marker and is removed (the task starts a new run); a folder that another
    task's run now holds, or a missing one, is left alone."""
    from ganaug.runs import allocate_run
    from ganaug.study_tasks import started_path, started_run

    task = next(t for t in expand(PRESETS["smoke"]) if t["kind"] == "generator")
    claim = started_path(tmp_path / "study", task["id"])
    assert started_run(claim, task) is None  # never started
    empty = allocate_run(tmp_path, "generators", "CGANOriginalGenerator")
    claim.parent.mkdir(parents=True)
    claim.write_text(json.dumps({"run_dir": str(empty.results)}))
    assert started_run(claim, task) is None
    assert not empty.results.exists() and not empty.models.exists()
    run = allocate_run(tmp_path, "generators", "CGANOriginalGenerator")
    (run.results / "config.json").write_text(json.dumps({"arch": task["family"], "seed": task["seed"],
                                                         "fraction": task["fraction"]}))
    claim.write_text(json.dumps({"run_dir": str(run.results)}))
    assert started_run(claim, task) == run
    (run.results / "config.json").write_text(json.dumps({"arch": task["family"], "seed": task["seed"] + 1,
                                                         "fraction": task["fraction"]}))
    assert started_run(claim, task) is None and run.results.exists()  # another seed's run: not ours
    (run.results / "config.json").write_text(json.dumps({"arch": task["family"], "seed": task["seed"],
                                                         "fraction": task["fraction"]}))
    (run.results / "INCOMPLETE").unlink()  # marked finished, but it has no metrics or model: not adopted
    assert started_run(claim, task) is None
    (run.results / "metrics.json").write_text("{}")
    (run.models / "generator.safetensors").write_bytes(b"weights")
    assert started_run(claim, task) == run  # finished and not recorded: the task adopts it
    claim.write_text(json.dumps({"run_dir": str(tmp_path / "results" / "generators" / "gone Run 1")}))
    assert started_run(claim, task) is None


def test_saved_records_carry_the_models_an_unfinished_cell_needs(smoke_study, tmp_path):
    """scripts/study_records.py save keeps the runs whose model a task not yet recorded needs
    (here the seed-1 generator, whose GAN classifiers are not recorded yet) without their
    checkpoints, and restore puts them back under the new --out, where the records now point:
    the resumed study has nothing to train again. A finished study keeps none."""
    import shutil
    import sys

    from ganaug.generate import load_generator
    from ganaug.study_tasks import finished_results, lost_inputs
    from ganaug.study_config import study_config_from_dict

    _, reference, _ = smoke_study
    script = Path(__file__).resolve().parents[1] / "scripts" / "study_records.py"
    partial = tmp_path / "partial" / reference.name  # the study before its last tasks were recorded
    shutil.copytree(reference, partial)  # its config.json still names the reference --out
    for path in partial.glob("tasks/cls-*-s1-gan*.json"):
        path.unlink()
    (partial / "INCOMPLETE").write_text("")
    saved = tmp_path / "records"
    proc = subprocess.run([sys.executable, script, "save", partial, saved], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "and 1 run(s) still needed" in proc.stdout
    name = Path(json.loads((saved / "tasks" / "gen-fashion-mnist-f0.005-s1-cgan.json").read_text())["run_dir"]).name
    models = saved / "runs" / "models" / "generators" / name
    assert (models / "generator.safetensors").is_file() and (saved / "runs" / "results" / "generators" / name).is_dir()
    assert not (models / "checkpoint.pt").exists() and not (models / "generator.onnx").exists()
    proc = subprocess.run([sys.executable, script, "restore", saved, tmp_path / "elsewhere"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    folder = Path(proc.stdout.strip())
    tasks = expand(study_config_from_dict(json.loads((folder / "config.json").read_text())["study"]))
    done = finished_results(folder, tasks)
    assert lost_inputs(tasks, done) == ([], [])  # nothing to train again
    record = done["gen-fashion-mnist-f0.005-s1-cgan"]
    assert Path(record["run_dir"]) == (tmp_path / "elsewhere").resolve() / "results" / "generators" / name
    assert load_generator(record["run_dir"]).cfg.seed == 1
    again = subprocess.run([sys.executable, script, "restore", saved, tmp_path / "elsewhere"],
                           capture_output=True, text=True)
    assert again.returncode != 0 and "exists; restore into another --out" in again.stderr
    proc = subprocess.run([sys.executable, script, "save", reference, saved], capture_output=True, text=True)
    assert proc.returncode == 0 and "and 0 run(s) still needed" in proc.stdout
    assert not (saved / "runs").exists()


def test_lost_generators_and_filter_classifiers_are_retrained_and_their_failed_users_retried(tmp_path):
    """A study carried without its run folders: a recorded generator or real-data classifier
    whose saved model is gone is trained again when an open task needs it (a confidence filter
    needs the real classifier of its cell), and a task that failed for want of it runs again;
    inputs whose models are still there, and inputs no open task needs, are left alone."""
    from dataclasses import replace

    from ganaug.study_tasks import expand, lost_inputs
    from ganaug.study_config import PRESETS

    smoke = PRESETS["smoke"]
    tasks = expand(replace(smoke, lever_filters=(0.9,), lever_fractions=smoke.fractions))
    (filtered,) = [t for t in tasks if t["seed"] == 0 and t.get("variant", {}).get("filter")]
    real, generator = filtered["deps"]["filter"], filtered["deps"]["generator"]
    gone = str(tmp_path / "results" / "classifiers" / "CNNOriginalClassifier Run 9")
    done = {t["id"]: {"id": t["id"], "run_dir": gone} for t in tasks if t["seed"] == 0}
    assert lost_inputs(tasks, done) == ([], [])  # seed 0 finished: nothing open needs its inputs
    done[filtered["id"]] = {"id": filtered["id"], "error": f"run folder {gone} does not exist"}
    assert lost_inputs(tasks, done) == (sorted([generator, real]), [filtered["id"]])
    kept = tmp_path / "results" / "classifiers" / "CNNOriginalClassifier Run 1"
    kept.mkdir(parents=True)
    (tmp_path / "models" / "classifiers" / kept.name).mkdir(parents=True)
    (tmp_path / "models" / "classifiers" / kept.name / "model.safetensors").write_bytes(b"weights")
    (kept / "metrics.json").write_text(json.dumps({"seconds": 12.34}))
    done[real].update(run_dir=str(kept), metrics={"seconds": 12.34})
    assert lost_inputs(tasks, done) == ([generator], [filtered["id"]])
    # a folder of the recorded name that holds another run (a restored study's new run took the
    # name): the recorded classifier is gone all the same
    done[real]["metrics"] = {"seconds": 56.78}
    assert lost_inputs(tasks, done) == (sorted([generator, real]), [filtered["id"]])
    # ... also when the other run took as long (timing is rounded to 10 ms; short runs share it)
    (kept / "metrics.json").write_text(json.dumps({"seconds": 12.34, "test": {"accuracy": 0.71}}))
    done[real]["metrics"] = {"seconds": 12.34, "test": {"accuracy": 0.69}}
    assert lost_inputs(tasks, done) == (sorted([generator, real]), [filtered["id"]])
    done[real]["metrics"] = {"seconds": 12.34, "test": {"accuracy": 0.71}}
    assert lost_inputs(tasks, done) == ([generator], [filtered["id"]])
    (kept / "INCOMPLETE").write_text("this run has not finished\n")
    assert lost_inputs(tasks, done) == (sorted([generator, real]), [filtered["id"]])


@pytest.mark.slow
def test_ray_executor_gives_the_same_numbers(smoke_study, tmp_path):
    _, reference, _ = smoke_study
    # One Ray worker: the tasks still run in Ray's worker processes, and beside the other pytest
    # worker two Ray workers would oversubscribe 2 cores (measured: 166 s in CI with two; 83 s for
    # one and 54 s for two on an idle machine).
    proc = ganaug(*SMOKE, "--executor", "ray", "--workers", "1", "--out", tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr
    (folder,) = study_dirs(tmp_path)
    got = json.loads((folder / "stats.json").read_text())
    want = json.loads((reference / "stats.json").read_text())
    assert without_timing(got) == without_timing(want)


def test_resume_or_interim_without_an_unfinished_study_is_a_user_error(tmp_path):
    assert_user_error(ganaug("study", "--resume", "--out", tmp_path), "no unfinished study")
    assert_user_error(ganaug("study", "--interim", "--out", tmp_path), "no unfinished study")
    assert_user_error(ganaug("study", "--interim", tmp_path, "--out", tmp_path), "is not a study folder")
    assert_user_error(ganaug("study", "--interim", "--preset", "smoke", "--out", tmp_path),
                      "--interim reports on an existing study")


def test_unknown_executor_is_a_user_error(tmp_path):
    assert_user_error(ganaug(*SMOKE, "--executor", "spark", "--out", tmp_path), "--executor")
