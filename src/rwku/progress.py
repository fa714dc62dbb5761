"""Rich progress bars with rates and ETA, shared by every long-running command."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Items per second of a task."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.2f} it/s" if speed else "? it/s", style="progress.data.speed")


def make_progress(console: Console | None = None) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        transient=False,
    )


def task_factory(progress: Progress) -> Callable[[str, int], object]:
    """A ``progress(description, total)`` context manager that yields ``advance(n)`` for one bar."""

    @contextmanager
    def task(description: str, total: int) -> Iterator[Callable[[int], None]]:
        task_id = progress.add_task(description, total=total)
        try:
            yield lambda n: progress.advance(task_id, n)
        finally:
            progress.update(task_id, completed=total, visible=False)
            progress.remove_task(task_id)

    return task
