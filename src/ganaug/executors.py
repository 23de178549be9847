"""Where study tasks run: a few local processes sized to the cores, or a Ray cluster.

Both executors run the same function with the same fixed number of torch threads per task, so
the same seeds give the same numbers under either. Each task process applies the malloc tuning
(see runtime.py) and keeps its own progress bars quiet; the study shows one bar for all.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from .errors import UserError
from .runtime import MALLOC_ENV

EXECUTORS = ("local", "ray")
RAY_OBJECT_STORE_BYTES = 512 * 1024**2  # tasks pass small dicts; cap Ray's shared memory
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent() -> None:
    """End this worker when the study process dies (even by SIGKILL) instead of lingering."""
    parent = os.getppid()
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) == 0 and os.getppid() == parent:
            return
    except (OSError, AttributeError):
        pass

    def watch() -> None:  # portable fallback: poll for re-parenting
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def worker_init(threads: int) -> None:
    import torch
    from threadpoolctl import threadpool_limits

    from .runtime import tune_malloc

    die_with_parent()
    os.environ["GANAUG_PROGRESS"] = "0"
    tune_malloc()
    torch.set_num_threads(threads)
    # numpy/scipy's BLAS and OpenMP pools too (the generator metrics use them): Ray starts its workers
    # with OMP_NUM_THREADS=1, a spawned local worker inherits the default (all cores); a different
    # thread count changes the order of float reductions, and so the metrics' last digits.
    threadpool_limits(limits=threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set: Ray reuses its worker processes
        pass


def execute(task: dict, context: dict) -> dict:
    from .study_tasks import run_task

    return run_task(task, context)


class LocalExecutor:
    def __init__(self, workers: int, threads: int):
        os.environ.update(MALLOC_ENV)  # inherited by the spawned processes
        self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=worker_init, initargs=(threads,))
        self.workers = workers

    def submit(self, task: dict, context: dict):
        return self.pool.submit(execute, task, context)

    def wait_any(self, handles: list) -> list:
        done, _ = wait(handles, return_when=FIRST_COMPLETED)
        return list(done)

    @staticmethod
    def result(handle) -> dict:
        return handle.result()

    def shutdown(self, cancel: bool = False) -> None:
        self.pool.shutdown(wait=not cancel, cancel_futures=cancel)
        if cancel:  # do not leave half-finished tasks running after Ctrl-C
            for process in list(getattr(self.pool, "_processes", {}).values()):
                process.terminate()


def _ray_execute(task: dict, context: dict, threads: int) -> dict:
    worker_init(threads)
    return execute(task, context)


class RayExecutor:
    def __init__(self, workers: int, threads: int, address: str | None):
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        try:
            import ray
        except ImportError:
            raise UserError("--executor ray needs Ray: pip install 'ganaug[ray]'") from None
        self.ray = ray
        env = {"env_vars": {**MALLOC_ENV, "RAY_USAGE_STATS_ENABLED": "0", "GANAUG_PROGRESS": "0"}}
        try:
            if address:
                ray.init(address=address, runtime_env=env, log_to_driver=False)
            else:
                ray.init(num_cpus=workers * threads, include_dashboard=False, runtime_env=env,
                         object_store_memory=RAY_OBJECT_STORE_BYTES, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UserError(f"could not start or join Ray ({str(exc).splitlines()[0]})") from None
        self.remote = ray.remote(num_cpus=threads, max_retries=0)(_ray_execute)
        self.threads = threads
        self.workers = int(ray.cluster_resources().get("CPU", workers * threads)) // threads

    def submit(self, task: dict, context: dict):
        return self.remote.remote(task, context, self.threads)

    def wait_any(self, handles: list) -> list:
        done, _ = self.ray.wait(handles, num_returns=1)
        return done

    def result(self, handle) -> dict:
        try:
            return self.ray.get(handle)
        except self.ray.exceptions.RayTaskError as exc:
            cause = exc.as_instanceof_cause()
            if isinstance(cause, UserError):
                raise UserError(str(cause)) from None
            raise

    def shutdown(self, cancel: bool = False) -> None:
        self.ray.shutdown()


def check_executor(kind: str, address: str | None) -> None:
    if kind not in EXECUTORS:
        raise UserError(f"--executor must be one of {', '.join(EXECUTORS)}; got {kind!r}")
    if address and kind != "ray":
        raise UserError("--ray-address needs --executor ray")


def default_workers(workers: int, threads: int) -> int:
    """``workers``, or when it is 0 as many as the cores hold at ``threads`` threads each."""
    return workers if workers > 0 else max(1, (os.cpu_count() or 1) // threads)


def make_executor(kind: str, workers: int, threads: int, address: str | None = None):
    check_executor(kind, address)
    workers = default_workers(workers, threads)
    return RayExecutor(workers, threads, address) if kind == "ray" else LocalExecutor(workers, threads)
