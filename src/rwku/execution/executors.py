"""Executors: who computes the units of a plan. ``local`` computes them one after another in this process;
``ray`` hands them to a Ray cluster (this machine's GPUs, or many machines), one task per unit.

An executor only computes: each finished unit comes back as a :class:`~rwku.execution.store.UnitOutput` (or as a
failure after its retries) through ``done``, and the driver (:mod:`rwku.execution.run`) writes it. A unit that
fails never stops the others.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from rwku.errors import RwkuError
from rwku.evaluation.context import ProgressFactory, no_progress
from rwku.execution.plan import UnitTask
from rwku.execution.store import UnitOutput


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
    """In this process, one unit after another (the default)."""

    max_retries: int = 1
    name: str = "local"

    def run(self, tasks: Sequence[UnitTask], progress: ProgressFactory, done: Done) -> None:
        for task in tasks:
            output, failure = compute_with_retries(task, progress, self.max_retries)
            done(task, output, failure, f"local pid {os.getpid()}")


def ray_compute(task: UnitTask, max_retries: int, threads: int | None) -> tuple[UnitOutput | None, Failure | None, str]:
    """The body of a Ray task: compute one unit where Ray placed it; return its files (no shared disk needed)."""
    import platform

    if threads:
        import torch

        torch.set_num_threads(threads)
    output, failure = compute_with_retries(task, no_progress, max_retries)
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return output, failure, f"{platform.node()} pid {os.getpid()}" + (f" gpu {gpus}" if gpus else "")


@dataclass
class RayExecutor:
    """One Ray task per unit, with the resources a unit asks for; Ray places them (one per GPU by default).

    ``address`` is ``None`` to start a local cluster that sees every GPU of this machine, ``auto`` to join a running
    one, or ``ray://host:port``. A worker that dies is retried by Ray itself (``max_retries`` times); a unit that
    raises is retried inside its task. "Before" units are handed out first (the plan orders them so).
    """

    address: str | None = None
    gpus_per_unit: float = 0.0
    cpus_per_unit: float = 1.0
    max_retries: int = 1
    threads_per_unit: int | None = None
    name: str = "ray"

    def start(self) -> Any:
        try:
            import ray
        except ImportError as exc:
            raise RwkuError("--executor ray needs Ray: pip install 'rwku[ray]'") from exc
        if not ray.is_initialized():
            if self.address is None:
                os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # a local cluster binds to 127.0.0.1 only
                ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
            else:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        return ray

    def run(self, tasks: Sequence[UnitTask], progress: ProgressFactory, done: Done) -> None:
        if not tasks:
            return
        ray = self.start()
        remote = ray.remote(ray_compute).options(num_cpus=self.cpus_per_unit, num_gpus=self.gpus_per_unit,
                                                 max_retries=self.max_retries, retry_exceptions=False)
        pending = {remote.remote(task, self.max_retries, self.threads_per_unit): task for task in tasks}
        try:
            while pending:
                finished, _ = ray.wait(list(pending), num_returns=1)
                task = pending.pop(finished[0])
                try:
                    output, failure, where = ray.get(finished[0])
                except Exception as exc:  # the worker died more often than Ray retries it
                    output, failure, where = None, Failure(describe(exc), traceback.format_exc(), self.max_retries + 1), "ray"
                done(task, output, failure, where)
        except BaseException:  # Ctrl-C, or a failure that ends the run: stop what is still queued or running
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
