"""Run folders: labels, atomic index allocation (threads and processes), atomic writes."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import threading
from pathlib import Path

import pytest

from ganaug import runs
from ganaug.errors import UserError
from ganaug.runs import (INCOMPLETE_MARKER, allocate_run, atomic_save, atomic_write_bytes,
                         atomic_write_json, check_out_dir, read_json, resolve_run, run_label)

LABEL = "CNNOriginalClassifier"


def test_run_label_follows_the_contract():
    assert run_label("CNN", "Original", "Classifier") == "CNNOriginalClassifier"
    assert run_label("CDCGAN", "Augmented", "Generator") == "CDCGANAugmentedGenerator"


def test_allocation_counts_up_and_marks_runs_incomplete(tmp_path):
    first, second = allocate_run(tmp_path, "classifiers", LABEL), allocate_run(tmp_path, "classifiers", LABEL)
    assert first.name == f"{LABEL} Run 1" and second.name == f"{LABEL} Run 2"
    assert first.results == tmp_path / "results" / "classifiers" / f"{LABEL} Run 1"
    assert first.models == tmp_path / "models" / "classifiers" / f"{LABEL} Run 1"
    for folder in (first.results, first.models, second.results, second.models):
        assert (folder / INCOMPLETE_MARKER).is_file()
    first.finish()
    assert not (first.results / INCOMPLETE_MARKER).exists()
    assert not (first.models / INCOMPLETE_MARKER).exists()
    assert (second.results / INCOMPLETE_MARKER).is_file()  # only the finished run is unmarked
    other = allocate_run(tmp_path, "classifiers", "ShallowNNOriginalClassifier")
    assert other.name == "ShallowNNOriginalClassifier Run 1"  # indexes are per label


def test_next_index_is_one_above_the_largest_present(tmp_path):
    (tmp_path / "models" / "classifiers" / f"{LABEL} Run 7").mkdir(parents=True)
    (tmp_path / "results" / "classifiers" / f"{LABEL} Run 3").mkdir(parents=True)
    (tmp_path / "results" / "classifiers" / f"X{LABEL} Run 40").mkdir()  # another label
    assert allocate_run(tmp_path, "classifiers", LABEL).name == f"{LABEL} Run 8"


def _indexes(out: Path) -> list[int]:
    names = [p.name for p in (out / "results" / "classifiers").iterdir()]
    assert all((out / "models" / "classifiers" / n).is_dir() for n in names)
    return sorted(int(n.rsplit(" ", 1)[1]) for n in names)


def test_concurrent_allocation_from_threads_never_collides(tmp_path):
    threads, per_thread = 16, 4
    barrier = threading.Barrier(threads)
    got, errors = [], []

    def work():
        try:
            barrier.wait()
            for _ in range(per_thread):
                got.append(allocate_run(tmp_path, "classifiers", LABEL).name)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert not errors
    n = threads * per_thread
    assert len(set(got)) == len(got) == n
    assert _indexes(tmp_path) == list(range(1, n + 1))


def _allocate_in_process(out: str, count: int, barrier, queue) -> None:
    barrier.wait()
    queue.put([allocate_run(out, "classifiers", LABEL).name for _ in range(count)])


def test_concurrent_allocation_from_processes_never_collides(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    processes, per_process = 4, 5
    barrier, queue = ctx.Barrier(processes), ctx.Queue()
    workers = [ctx.Process(target=_allocate_in_process,
                           args=(str(tmp_path), per_process, barrier, queue))
               for _ in range(processes)]
    for w in workers:
        w.start()
    got = [name for _ in workers for name in queue.get(timeout=120)]
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    n = processes * per_process
    assert len(set(got)) == len(got) == n
    assert _indexes(tmp_path) == list(range(1, n + 1))


# ---------------------------------------------------------------- atomic writes

def test_atomic_write_replaces_whole_files_and_leaves_no_temporaries(tmp_path):
    path = tmp_path / "sub" / "metrics.json"
    atomic_write_json(path, {"a": 1})
    atomic_write_json(path, {"a": 2, "b": [1.5]})
    assert read_json(path) == {"a": 2, "b": [1.5]}
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]
    # normal permissions (the temporary file's 0600 is not kept)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_atomic_writes_leave_the_process_umask_alone(tmp_path, monkeypatch):
    """os.umask is process-wide: setting it, even briefly, while another thread creates a run
    folder would give that folder the wrong permissions (it did: 0777 instead of 0755)."""
    calls = []
    monkeypatch.setattr(runs.os, "umask", lambda mask: calls.append(mask) or 0o022)
    atomic_write_bytes(tmp_path / "a.bin", b"x")
    atomic_save(tmp_path / "b.bin", lambda tmp: Path(tmp).write_bytes(b"y"))
    assert calls == []


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    atomic_write_json(path, {"old": True})
    before = path.read_bytes()

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runs.os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        atomic_write_bytes(path, b"new and half written")
    monkeypatch.undo()

    def half_then_fail(tmp):
        Path(tmp).write_bytes(b"partial")
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of saving a plot

    with pytest.raises(KeyboardInterrupt):
        atomic_save(tmp_path / "curves.png", half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        atomic_save(path, half_then_fail)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_read_json_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="missing"):
        read_json(tmp_path / "metrics.json")
    (tmp_path / "metrics.json").write_text('{"train": ')
    with pytest.raises(UserError, match="not valid JSON"):
        read_json(tmp_path / "metrics.json")


# ---------------------------------------------------------------- --out and run lookup

def test_unusable_out_is_a_user_error(tmp_path):
    regular = tmp_path / "file"
    regular.write_text("x")
    with pytest.raises(UserError, match="is not a folder"):
        check_out_dir(regular)
    with pytest.raises(UserError, match="not writable"):
        check_out_dir(regular / "below")
    with pytest.raises(UserError):
        allocate_run(regular, "classifiers", LABEL)
    assert regular.read_text() == "x"
    (tmp_path / "out" / "results").mkdir(parents=True)
    (tmp_path / "out" / "results" / "classifiers").write_text("in the way")
    with pytest.raises(UserError, match="classifiers"):
        allocate_run(tmp_path / "out", "classifiers", LABEL)


def test_resolve_run_accepts_results_or_models_folder(tmp_path):
    run = allocate_run(tmp_path, "generators", "CGANOriginalGenerator")
    for path in (run.results, run.models):
        found = resolve_run(path, "generators")
        assert (found.results, found.models, found.name) == (run.results.resolve(),
                                                              run.models.resolve(), run.name)
    with pytest.raises(UserError, match="not a ganaug generator run folder"):
        resolve_run(tmp_path, "generators")
    with pytest.raises(UserError, match="does not exist"):
        resolve_run(tmp_path / "nope", "generators")


def test_versions_name_what_decides_the_numbers():
    import torch

    found = runs.versions()
    assert found["torch"] == torch.__version__
    assert {"python", "ganaug", "numpy", "onnxruntime"} <= set(found)
    json.dumps(found)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores: BLAS starts one thread per core")
def test_threads_option_bounds_numpy_blas_as_well_as_torch():
    """`--threads 1` (runtime.set_threads) must bound numpy's BLAS too: the generator metrics run
    there, and a thread per core on top of other workers oversubscribes the machine."""
    import subprocess
    import sys

    code = ("import threadpoolctl, torch\nfrom ganaug.runtime import set_threads\n"
            "blas = lambda: max(d['num_threads'] for d in threadpoolctl.threadpool_info()"
            " if d['user_api'] == 'blas')\n"
            "before = blas()\nset_threads(1)\nprint(before, blas(), torch.get_num_threads())")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert int(out[0]) > 1 and out[1:] == ["1", "1"]
