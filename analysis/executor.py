"""Run the points of a grid that are not done yet: in this process, or on a Dask cluster.

In-process and sequential by default (no cluster).  `workers=K` starts a dask.distributed
LocalCluster of K single-threaded worker processes with XLA/BLAS held to one thread each and a
shared persistent XLA cache; `scheduler`/`scheduler_file` join a running cluster instead.  Only
this (driver) process writes the manifest; workers write their own point files atomically.
A failed point is recorded and the others go on; a worker that dies loses only its running
point, which Dask reschedules.  Ctrl-C cancels what runs, keeps what is saved, raises
Interrupted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import sys
import threading
import time
import uuid
import warnings

from distributed.diagnostics.plugin import WorkerPlugin

from . import point as pointlib
from .store import Store, entry, one_line

THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


class SchedulerError(ValueError):
    """The Dask scheduler named on the command line cannot be reached (one line, exit 2)."""


class Interrupted(Exception):
    """Ctrl-C during a sweep; the message says what is saved and how to resume."""


@dataclasses.dataclass
class Outcome:
    """How a sweep ended: points done (in total), failed, computed now, and the total."""

    total: int
    done: int
    failed: int
    computed: int
    seconds: float


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class _Progress:
    """One bar over points (done, failed, running, ETA); log lines go above it."""

    def __init__(self, enabled: bool, total: int, initial: int, log):
        self.bar, self.log = None, log
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total,
                initial=initial,
                desc="points",
                unit="pt",
                dynamic_ncols=True,
                position=0,
                file=sys.stderr,
            )
            self.log = lambda msg: tqdm.write(msg, file=sys.stderr)

    def update(self, n: int, done: int, failed: int, running: int) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(
                f"done {done}, failed {failed}, running {running}", refresh=n == 0
            )  # update(n > 0) refreshes anyway
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@contextlib.contextmanager
def _ctrl_c_flag():
    """Ctrl-C raises KeyboardInterrupt as usual and also sets bayesnet.engine's interrupt flag,
    which the sampler (between chunks) and this driver (between points) honour: the exception
    alone is lost when it lands in a garbage-collection callback."""
    from bayesnet import engine

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        engine.request_interrupt()
        raise KeyboardInterrupt

    def unraisable(info):  # the lost exception: no "Exception ignored" traceback, the flag acts
        if not (engine.interrupt_requested() and info.exc_type is KeyboardInterrupt):
            hook(info)

    engine.clear_interrupt()
    previous, hook = signal.signal(signal.SIGINT, handler), sys.unraisablehook
    sys.unraisablehook = unraisable
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = hook
        engine.clear_interrupt()


def _check_interrupt() -> None:
    """Raise the KeyboardInterrupt of a Ctrl-C whose exception was lost (see _ctrl_c_flag)."""
    from bayesnet import engine

    if engine.interrupt_requested():
        raise KeyboardInterrupt


def plan_states(grid, store: Store, retry_failed: bool, log=_log) -> tuple[dict, list]:
    """Manifest entries of every point and the points to compute.

    A point is done when its file opens as that point; a file that does not is recomputed
    (named in the log).  Points that failed before are skipped unless retry_failed.
    """
    old = store.read_manifest()
    store.remove_temporaries()  # no writer is running: the caller holds the folder's lock
    entries, todo = {}, []
    for p in grid.points:
        prev = old.get(p.key, {})
        # a file that collect could not read is read in full again (checksums); others only
        # have their structure checked, which costs nothing however large the draws are
        problem = (store.verify_point if prev.get("file_error") else store.check_point)(p.key)
        if problem is None:
            entries[p.key] = entry(p, "done", seconds=prev.get("seconds"))
            continue
        if prev.get("state") == "failed" and not retry_failed and not prev.get("file_error"):
            entries[p.key] = {
                **entry(p, "failed", prev.get("error", "")),
                "updated": prev.get("updated"),
            }
            continue
        if store.point_path(p.key).exists():
            log(f"{problem}: recomputing it")
        entries[p.key] = entry(p, "pending")
        todo.append(p)
    return entries, todo


def run(
    grid,
    store: Store,
    workers: int | None = None,
    scheduler: str | None = None,
    scheduler_file: str | None = None,
    progress: bool = True,
    retry_failed: bool = False,
    cache_dir: str = "",
    log=_log,
) -> Outcome:
    """Compute every point of `grid` that is not done; the manifest follows every change."""
    t0 = time.perf_counter()
    entries, todo = plan_states(grid, store, retry_failed, log)
    n = len(grid.points)
    n_done = sum(e["state"] == "done" for e in entries.values())
    n_failed = sum(e["state"] == "failed" for e in entries.values())
    if n_done:
        log(f"{n_done} of {n} points done, resuming")
    if n_failed:
        log(f"{n_failed} points failed before and are skipped (--retry-failed reruns them)")
    store.write_manifest(entries)
    state = _State(entries, store, _Progress(progress and bool(todo), n, n_done + n_failed, log))
    try:
        with _ctrl_c_flag():
            if todo and (workers or scheduler or scheduler_file):
                _run_dask(todo, store, state, workers, scheduler, scheduler_file, cache_dir)
            elif todo:
                _run_here(todo, store, state, progress)
            _check_interrupt()
    except KeyboardInterrupt:
        for e in entries.values():
            if e["state"] == "running":
                e["state"] = "pending"
        store.write_manifest(entries)
        state.progress.close()
        done = sum(e["state"] == "done" for e in entries.values())
        raise Interrupted(
            f"interrupted: {done} of {n} points are saved in {store.points}; "
            f"run the same command again to resume"
        ) from None
    state.progress.close()
    store.remove_temporaries()  # what a killed worker left half-written
    store.write_manifest(entries)
    counts = {s: sum(e["state"] == s for e in entries.values()) for s in ("done", "failed")}
    return Outcome(
        total=n,
        done=counts["done"],
        failed=counts["failed"],
        computed=sum(entries[p.key]["state"] == "done" for p in todo),
        seconds=time.perf_counter() - t0,
    )


class _State:
    """Manifest entries, counters and the bar, updated as results come in."""

    def __init__(self, entries: dict, store: Store, progress: _Progress):
        self.entries, self.store, self.progress = entries, store, progress

    def counts(self) -> tuple[int, int, int]:
        states = [e["state"] for e in self.entries.values()]
        return states.count("done"), states.count("failed"), states.count("running")

    def set_running(self, keys) -> None:
        """Mark `keys` running and other running points pending; done and failed stay."""
        changed = False
        for key, e in self.entries.items():
            if e["state"] not in ("pending", "running"):
                continue
            want = "running" if key in keys else "pending"
            if e["state"] != want:
                e["state"], changed = want, True
        if changed:
            self.store.write_manifest(self.entries)
            self.progress.update(0, *self.counts())

    def finish(self, p, result: dict) -> None:
        """Record one finished or failed point."""
        e = self.entries[p.key]
        e.update(
            state=result["state"],
            error=result.get("error", ""),
            seconds=result.get("seconds"),
            updated=entry(p, "done")["updated"],
        )
        self.store.marker_path(p.key).unlink(missing_ok=True)
        self.store.write_manifest(self.entries)
        tag = f"{p.network} N={p.spec.width} chi={p.chi:.4g}"
        if result["state"] == "done":
            self.progress.log(f"done {tag} in {result['seconds']:.1f}s: {result['summary']}")
        else:
            where = result.get("log")
            self.progress.log(
                f"FAILED {tag}: {result['error']}"
                + (f" (traceback in {where})" if where else " (no traceback was written)")
            )
        self.progress.update(1, *self.counts())


def _run_here(todo, store: Store, state: _State, progress: bool) -> None:
    """Every point in this process, one after the other; the sampler's bar under the points'."""
    for p in todo:
        _check_interrupt()
        state.set_running({p.key})
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="sampling interrupted")
                result = pointlib.run_point(
                    p, store.root, progress=progress, desc=f"{p.network} chi={p.chi:.3g}"
                )
        except KeyboardInterrupt:
            raise
        except Exception as err:  # noqa: BLE001 - one failed point never stops the others
            result = pointlib.failure(p, store.root, err)
        state.finish(p, result)


def worker_env(cache_dir: str) -> dict:
    """Environment of each LocalCluster worker: one XLA/BLAS thread, the shared XLA cache."""
    xla = " ".join(filter(None, [os.environ.get("XLA_FLAGS", ""), XLA_ONE_THREAD]))
    env = {**THREAD_ENV, "XLA_FLAGS": xla}
    if cache_dir:
        env["JAX_COMPILATION_CACHE_DIR"] = cache_dir
    return env


def _client(workers, scheduler, scheduler_file, cache_dir):
    """A distributed Client: to a new LocalCluster of `workers` processes, or to a scheduler."""
    from distributed import Client, LocalCluster

    if scheduler or scheduler_file:
        try:
            client = (
                Client(scheduler_file=scheduler_file, timeout=30)
                if scheduler_file
                else Client(scheduler, timeout=30)
            )
        except (OSError, ValueError) as err:
            where = scheduler_file or scheduler
            raise SchedulerError(
                f"cannot reach the Dask scheduler {where}: {one_line(err)}"
            ) from None
        return client, None
    # Ctrl-C in a terminal reaches the whole process group: the workers ignore it (an ignored
    # SIGINT is inherited by the processes they are spawned as, and Python keeps it ignored)
    # and the driver alone cancels, records and closes.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.CRITICAL,
            env=worker_env(cache_dir),
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    client = Client(cluster)
    client.register_plugin(_IgnoreSigint(), name="bayesnet-ignore-sigint")  # restarted workers
    return client, cluster


class _IgnoreSigint(WorkerPlugin):
    """Worker plugin: a worker restarted after a crash ignores Ctrl-C like the first ones."""

    def setup(self, worker) -> None:
        import threading

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_dask(
    todo, store: Store, state: _State, workers, scheduler, scheduler_file, cache_dir: str
) -> None:
    """Every point as one Dask task; results are recorded as they come in."""
    from distributed import as_completed

    t0 = time.perf_counter()
    client, cluster = _client(workers, scheduler, scheduler_file, cache_dir)
    if cluster is not None:
        client.wait_for_workers(workers, timeout=600)
    n = len(client.nthreads())
    state.progress.log(f"Dask: {n} workers ready in {time.perf_counter() - t0:.1f}s")
    root = str(store.root.resolve())
    tag = uuid.uuid4().hex[:8]
    futures: dict = {}
    try:
        futures = {
            client.submit(pointlib.task, p, root, cache_dir, key=f"point-{p.key}-{tag}"): p
            for p in todo
        }
        running: set = set()
        ac = as_completed(futures)
        while not ac.is_empty():
            batch = ac.next_batch(block=False)
            for fut in batch:
                # forget the future once read: a result lost with a killed worker is then not
                # recomputed (which rewrote a finished point and left it "pending")
                p = futures.pop(fut)
                running.discard(p.key)
                if fut.status == "finished":
                    result = fut.result()
                else:
                    err = fut.exception() if fut.status == "error" else None
                    result = {
                        "key": p.key,
                        "state": "failed",
                        "error": f"task {fut.status}: "
                        + (f"{type(err).__name__}: {one_line(err)}" if err else ""),
                    }
                state.finish(p, result)
                fut.release()
            _check_interrupt()
            if not batch:
                now = {f.stem for f in store.points.glob("*.running")}
                keys = {futures[f].key for f in futures if not f.done()} & now
                if keys != running:
                    running = keys
                    state.set_running(running)
                time.sleep(0.2)
    except KeyboardInterrupt:
        if cluster is not None:  # stop at once: our own workers are killed, not drained
            _kill_workers(cluster)
        for p in futures.values():  # what the cancelled (unfinished) points left behind
            store.marker_path(p.key).unlink(missing_ok=True)
            store.log_path(p.key).unlink(missing_ok=True)
        raise
    finally:
        with contextlib.suppress(Exception):
            client.cancel(list(futures))  # after Ctrl-C: nothing keeps running for us
        with contextlib.suppress(Exception):
            client.close(timeout=5)
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close(timeout=5)


def _kill_workers(cluster) -> None:
    """SIGKILL the worker processes of our own LocalCluster (by their pids)."""
    for nanny in list(cluster.workers.values()):
        with contextlib.suppress(Exception):
            os.kill(nanny.process.process.pid, signal.SIGKILL)
