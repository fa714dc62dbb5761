"""Executors: who computes the units of a plan. ``local`` computes them one after another in this process;
``ray`` hands them to a Ray cluster (this machine's GPUs, or many machines), one task per unit.

An executor only computes: each finished unit comes back as a :class:`~rwku.execution.store.UnitOutput` (or as a
failure after its retries) through ``done``, and the driver (:mod:`rwku.execution.run`) writes it. A unit that
fails never stops the others.
"""

from __future__ import annotations

import dataclasses
import os
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from rwku.errors import RwkuError
from rwku.evaluation.context import ProgressFactory, no_progress
from rwku.execution.plan import UnitTask
from rwku.execution.store import UnitOutput
from rwku.interrupts import handlers_kept, native_calls


@dataclass
class Failure:
    """Why a unit failed, after how many attempts."""

    error: str
    traceback: str
    attempts: int
    user_error: bool = False  # an RwkuError: input the user must fix, not retried


#: ``done(task, output, failure, where)``: exactly one of output and failure is set; ``where`` names the worker.
Done = Callable[[UnitTask, "UnitOutput | None", "Failure | None", str], None]


class Executor(Protocol):
    name: str

    def run(self, tasks: Sequence[UnitTask], progress: ProgressFactory, done: Done) -> None: ...


def describe(exc: BaseException) -> str:
    """One line: a user error's own message, else the exception's type and message."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text if isinstance(exc, RwkuError) else f"{type(exc).__name__}: {text}".rstrip(": ")


def compute_with_retries(task: UnitTask, progress: ProgressFactory, max_retries: int) -> tuple[UnitOutput | None, Failure | None]:
    """Compute ``task``, trying again up to ``max_retries`` times; a user error (RwkuError) is not retried."""
    attempts = 0
    while True:
        attempts += 1
        try:
            return task.job.compute(task, progress), None
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # a unit's failure is recorded, never allowed to stop the others
            if isinstance(exc, RwkuError) or attempts > max_retries:
                return None, Failure(describe(exc), traceback.format_exc(), attempts, isinstance(exc, RwkuError))


@dataclass
class LocalExecutor:
    """In this process, one unit after another (the default). With ``gpus_per_unit`` above 1 each unit's model is
    spread over every GPU this process sees (choose them with ``CUDA_VISIBLE_DEVICES``)."""

    max_retries: int = 1
    gpus_per_unit: float = 0.0
    name: str = "local"

    def run(self, tasks: Sequence[UnitTask], progress: ProgressFactory, done: Done) -> None:
        spread_over_gpus(self.gpus_per_unit)
        for task in tasks:
            output, failure = compute_with_retries(task, progress, self.max_retries)
            done(task, output, failure, f"local pid {os.getpid()}")


#: In a Ray worker: the jobs of the run it last served, by the object id they were put as (read once per worker).
_WORKER_JOBS: dict[str, list[Any]] = {}


def worker_jobs(ref: Any) -> list[Any]:
    """The run's jobs, loaded from the object store the first time this worker needs them, then kept."""
    key = ref.hex()
    if key not in _WORKER_JOBS:
        import ray

        _WORKER_JOBS.clear()  # the jobs of an earlier run
        _WORKER_JOBS[key] = ray.get(ref)
    return _WORKER_JOBS[key]


def spread_over_gpus(gpus_per_unit: float) -> None:
    """Tell model loading (:func:`rwku.models.loading.place_model`) whether a unit spreads over the GPUs it sees."""
    from rwku.models.loading import SPREAD_GPUS

    os.environ[SPREAD_GPUS] = "1" if gpus_per_unit > 1 else "0"


def ray_compute(task: UnitTask, jobs: list[Any], index: int, max_retries: int,
                threads: int | None, gpus_per_unit: float = 0.0) -> tuple[UnitOutput | None, Failure | None, str]:
    """The body of a Ray task: compute one unit where Ray placed it; return its files (no shared disk needed).

    The task travels without its job: ``jobs`` holds the reference of the run's jobs, put once in the object store
    (their shared data pickled once), and ``index`` says which is the task's. Each worker loads them once.
    """
    import platform

    if threads:
        import torch

        torch.set_num_threads(threads)
    spread_over_gpus(gpus_per_unit)  # Ray shows the task only its own GPUs
    job = worker_jobs(jobs[0])[index]
    output, failure = compute_with_retries(dataclasses.replace(task, job=job), no_progress, max_retries)
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return output, failure, f"{platform.node()} pid {os.getpid()}" + (f" gpu {gpus}" if gpus else "")


#: Ray reads this once, when it is imported: ``0`` makes a cluster on this machine listen on 127.0.0.1 only.
LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise RwkuError("--executor ray needs Ray: pip install 'rwku[ray]'") from exc
    return ray


def start_local_ray(num_cpus: int | None = None, num_gpus: int | None = None) -> Any:
    """Start a Ray cluster on this machine, reachable from this machine only; return the ``ray`` module.

    ``num_cpus`` and ``num_gpus`` are what the cluster offers (every CPU and GPU of this machine by default).

    Without ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` Ray's processes on Linux listen on every interface at the
    address it guesses is this machine's. The variable is set before ``ray`` is imported (Ray reads it into a
    constant then, and the processes the cluster starts inherit it); where ``ray`` was imported earlier, its constant
    is set too. Both are put back once the cluster is up. ``address="local"`` never joins a cluster named by
    ``RAY_ADDRESS`` or one left running by ``ray start``; no dashboard. A cluster whose address is not the loopback
    one is shut down again: an error, not a cluster that others can reach.
    """
    previous = os.environ.get(LOOPBACK_ONLY)
    os.environ[LOOPBACK_ONLY] = "0"
    ray = import_ray()
    from ray._private import ray_constants

    enabled = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = enabled
        if previous is None:
            os.environ.pop(LOOPBACK_ONLY, None)
        else:
            os.environ[LOOPBACK_ONLY] = previous
    address = ray.util.get_node_ip_address()
    if address not in ("127.0.0.1", "::1"):
        ray.shutdown()
        raise RwkuError(f"--executor ray: the local Ray cluster came up on {address}, not 127.0.0.1; it was shut down")
    return ray


def ray_failure(exc: Exception, max_retries: int) -> Failure:
    """A unit whose Ray task ended in ``exc`` instead of returning: its worker (or node) died on every try, Ray
    having retried it ``max_retries`` times, or the task itself raised what a unit never returns (arguments that
    could not be loaded there, SystemExit): that is not retried."""
    from ray.exceptions import RayTaskError

    if isinstance(exc, RayTaskError):
        cause = exc.cause if isinstance(exc.cause, BaseException) else exc
        return Failure(describe(cause), str(exc), 1)
    return Failure(describe(exc), traceback.format_exc(), max_retries + 1)


def cancel(ray: Any, refs: Sequence[Any]) -> None:
    """Cancel Ray tasks, queued or running (a running one's worker is killed); one that cannot be cancelled (it
    finished meanwhile) is left."""
    for ref in refs:
        try:
            ray.cancel(ref, force=True)
        except Exception:  # noqa: BLE001 - cancelling is best effort: the error that ended the run is the one raised
            pass


@dataclass
class RayExecutor:
    """One Ray task per unit, with the resources a unit asks for; Ray places them (one per GPU by default).

    ``address`` is ``None`` to start a cluster on this machine that sees every GPU of it (``num_cpus`` CPUs, every
    CPU by default) and listens on 127.0.0.1 only, ``auto`` to join a running one, or ``ray://host:port``. Where this
    process is connected to Ray already, that cluster is used and left running. A cluster the executor started is
    shut down when its ``run`` ends (a cluster it joined, disconnected from).

    Each unit asks ``cpus_per_unit`` CPUs and ``gpus_per_unit`` GPUs; with GPUs, each unit gets a worker process of
    its own (a process keeps the GPU it first used). A worker that dies (killed by the system, out of memory) is
    retried by Ray itself, ``max_retries`` times; a unit that raises is retried inside its task. Results travel back
    to the driver, which writes them: no shared disk is needed. Ctrl-C or SIGTERM (rwku's handlers are kept over
    ``ray.init``'s), or any error on the driver, cancels every unit still queued or running. "Before" units are
    handed out first (the plan orders them so).
    """

    address: str | None = None
    gpus_per_unit: float = 0.0
    cpus_per_unit: float = 1.0
    max_retries: int = 1
    threads_per_unit: int | None = None
    num_cpus: int | None = None
    name: str = "ray"

    def connect(self) -> tuple[Any, bool]:
        """``ray``, connected; and whether this call connected it (then ``run`` shuts it down at its end)."""
        ray = import_ray()
        if ray.is_initialized():
            return ray, False
        # ray.init's own SIGTERM handler would exit 15 without rwku's cleanup and message; Ray's native code takes
        # a signal only as a KeyboardInterrupt
        with handlers_kept(), native_calls():
            if self.address is None:
                return start_local_ray(self.num_cpus), True
            ray.init(address=self.address, log_to_driver=False, configure_logging=False)
        return ray, True

    def run(self, tasks: Sequence[UnitTask], progress: ProgressFactory, done: Done) -> None:
        if not tasks:
            return
        ray, started = self.connect()
        try:
            self.compute(ray, tasks, done)
        finally:
            if started:
                ray.shutdown()

    def compute(self, ray: Any, tasks: Sequence[UnitTask], done: Done) -> None:
        # options on the remote function itself: a GPU unit then gets a fresh worker (Ray's max_calls=1 for GPUs)
        remote = ray.remote(num_cpus=self.cpus_per_unit, num_gpus=self.gpus_per_unit, max_retries=self.max_retries,
                            retry_exceptions=False)(ray_compute)
        jobs: dict[int, Any] = {id(task.job): task.job for task in tasks}  # the run's jobs, in order
        index = {key: i for i, key in enumerate(jobs)}
        pending: dict[Any, UnitTask] = {}
        try:
            with native_calls():  # Ray's wait and get take a signal only as a KeyboardInterrupt
                self.submit_and_collect(ray, remote, tasks, jobs, index, pending, done)
        except BaseException:  # Ctrl-C, or a failure that ends the run: stop what is still queued or running
            cancel(ray, list(pending))
            raise

    def submit_and_collect(self, ray: Any, remote: Any, tasks: Sequence[UnitTask], jobs: dict[int, Any],
                           index: dict[int, int], pending: dict[Any, UnitTask], done: Done) -> None:
        """Hand every unit to Ray (``pending``: those not back yet) and pass each result to ``done`` as it comes."""
        # one object for the run's jobs: sent once, not with every unit (a job with the full data pickles to
        # ~170 MB), the data they share pickled once; in a list, so that Ray hands the task the reference
        shared = [ray.put(list(jobs.values()))]
        for task in tasks:
            ref = remote.remote(dataclasses.replace(task, job=None), shared, index[id(task.job)], self.max_retries,
                                self.threads_per_unit, self.gpus_per_unit)
            pending[ref] = task
        while pending:
            finished, _ = ray.wait(list(pending), num_returns=1)
            task = pending.pop(finished[0])
            try:
                output, failure, where = ray.get(finished[0])
            except Exception as exc:  # noqa: BLE001 - the task did not return: recorded as the unit's failure
                output, failure, where = None, ray_failure(exc, self.max_retries), "ray"
            done(task, output, failure, where)
