"""Map a picklable function over a list of tasks, in parallel, on this machine or on Ray.

``local`` runs a process pool of N workers; ``ray`` runs the same calls as Ray tasks, on the
cluster at ``address`` or on a local Ray instance with N CPUs that this module starts and stops.
Either way the results come back in task order, each call's exception becomes that task's
``TaskResult.error`` (the run goes on), and ``on_done`` sees every result as it finishes (in
completion order), so a caller can save it at once and resume after an interruption."""

from __future__ import annotations

import importlib.util
import logging
import multiprocessing
import os
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from aicpp_opt.errors import InputError

EXECUTORS = ("local", "ray")
RAY_INSTALL = 'pip install -e ".[ray]"'


@dataclass(frozen=True)
class Executor:
    """Where tasks run. ``workers``: processes of the local pool, or CPUs of the local Ray
    instance (default: this machine's CPUs); ``address``: a running Ray cluster to use instead
    (``auto``, ``host:port`` or ``ray://host:10001``), which brings its own workers."""

    kind: str = "local"
    workers: int | None = None
    address: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise InputError("--executor", f"unknown {self.kind!r}; use {' or '.join(EXECUTORS)}")
        if self.kind == "ray" and importlib.util.find_spec("ray") is None:
            raise InputError("--executor", f"ray is not installed; {RAY_INSTALL}")
        if self.workers is not None and self.workers < 1:
            raise InputError("--workers", f"must be at least 1, got {self.workers}")
        if self.address is not None and self.kind != "ray":
            raise InputError("--address", "is a Ray cluster address; add --executor ray")
        if self.address is not None and self.workers is not None:
            raise InputError(
                "--workers", "a Ray cluster at --address brings its own workers; drop --workers"
            )

    @property
    def size(self) -> int:
        """Workers this executor starts (unless told, the CPUs this process may use)."""
        if self.workers:
            return self.workers
        if hasattr(os, "sched_getaffinity"):
            return len(os.sched_getaffinity(0))
        return os.cpu_count() or 1

    def describe(self) -> str:
        if self.address is not None:
            return f"ray cluster at {self.address}"
        return f"{self.kind} with {self.size} worker{'s' if self.size > 1 else ''}"


@dataclass(frozen=True)
class TaskResult:
    """One task's return value, or the exception it raised as ``"Type: message"``."""

    value: Any = None
    error: str | None = None


def guarded(fn: Callable[[Any], Any], task: Any, env: Mapping[str, str]) -> TaskResult:
    """Run one task in a worker, with ``env`` set in its environment first; an exception
    becomes the task's error instead of ending the run."""
    os.environ.update(env)
    try:
        return TaskResult(value=fn(task))
    except Exception as err:
        return TaskResult(error=_describe(err))


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


Done = Callable[[int, TaskResult], None]


def map_tasks(
    fn: Callable[[Any], Any],
    tasks: Sequence[Any],
    executor: Executor,
    on_done: Done | None = None,
    progress: bool = False,
    label: str = "tasks",
    env: Mapping[str, str] | None = None,
) -> list[TaskResult]:
    """``fn`` over ``tasks`` on ``executor``: one result per task, in task order. ``fn`` must be
    a module-level function and the tasks picklable. ``progress`` draws a bar on stderr;
    ``env``: environment variables every task sees (e.g. to keep each to one core, since the
    executor already runs one task per core)."""
    results: dict[int, TaskResult] = {}
    if not tasks:
        return []
    with _progress_bar(len(tasks), progress, label) as advance:

        def done(index: int, result: TaskResult) -> None:
            results[index] = result
            if on_done is not None:
                on_done(index, result)
            advance()

        run = _run_ray if executor.kind == "ray" else _run_local
        run(fn, tasks, dict(env or {}), executor, done)
    return [results[i] for i in range(len(tasks))]


@contextmanager
def _progress_bar(total: int, show: bool, label: str) -> Iterator[Callable[[], None]]:
    if not show:
        yield lambda: None
        return
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda: bar.advance(task)


def _run_local(
    fn: Callable, tasks: Sequence[Any], env: dict[str, str], executor: Executor, done: Done
) -> None:
    """A process pool. Workers fork from a clean server process that has imported ``fn``'s
    module once (``forkserver``), not from this one, which may run threads (the progress bar)."""
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload([fn.__module__])
    with ProcessPoolExecutor(max_workers=executor.size, mp_context=context) as pool:
        futures = {pool.submit(guarded, fn, task, env): i for i, task in enumerate(tasks)}
        try:
            for future in as_completed(futures):
                done(futures[future], _local_result(future))
        except BaseException:  # Ctrl-C: drop the queued tasks, wait only for the running ones
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _local_result(future: Future) -> TaskResult:
    """The task's result; a worker that died or a task that did not pickle is its error."""
    try:
        return future.result()
    except Exception as err:
        return TaskResult(error=_describe(err))


def _run_ray(
    fn: Callable, tasks: Sequence[Any], env: dict[str, str], executor: Executor, done: Done
) -> None:
    """Ray tasks of one CPU each, collected as they finish; Ray is always shut down after.
    A local instance is started quiet: no dashboard, no worker logs, no usage reporting."""
    if executor.address is not None:
        _check_reachable(executor.address)
    import ray

    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
    if executor.address is None:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(num_cpus=executor.size, include_dashboard=False, **quiet)
    else:
        try:
            ray.init(address=executor.address, **quiet)
        except (ConnectionError, ValueError, RuntimeError) as err:
            message = f"cannot join the Ray cluster at {executor.address!r}: {err}"
            raise InputError("--address", message) from None
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(guarded)
        refs = {remote.remote(fn, task, env): i for i, task in enumerate(tasks)}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                done(refs[ref], _ray_result(ray, ref))
    finally:
        ray.shutdown()


def _check_reachable(address: str) -> None:
    """A ``host:port`` that nothing answers on is a one-line error at once, not minutes of Ray
    retrying (``auto`` fails fast by itself)."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise InputError("--address", f"{address!r}: use auto, host:port or ray://host:port")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        raise InputError(
            "--address",
            f"nothing answers at {host}:{port} ({err.strerror or err}); start the cluster with "
            "`ray start --head` or fix the address",
        ) from None


def _ray_result(ray, ref) -> TaskResult:
    """The task's result; a crashed worker or a lost object is its error."""
    try:
        return ray.get(ref)
    except Exception as err:
        return TaskResult(error=_describe(err))
