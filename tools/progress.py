"""Progress bars for the operator tools' long runs (bench, chaos, replay), on standard error so
standard output keeps only the results; without a terminal (CI, a pipe) rich draws nothing live
and the tools' own lines say where a run is."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

T = TypeVar("T")

console = Console(stderr=True)


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


@contextmanager
def phases(title: str, total: int) -> Iterator[Callable[[str], None]]:
    """A bar over a run's phases: call the function given with each phase's name as it begins."""
    with _progress() as progress:
        task = progress.add_task(title, total=total)
        started = 0

        def begin(name: str) -> None:
            nonlocal started
            progress.update(task, description=f"{title}: {name}", completed=started)
            started += 1

        yield begin
        progress.update(task, description=f"{title}: done", completed=total)


def each(items: Iterable[T], title: str, total: int | None = None) -> Iterator[T]:
    """A bar over the items of a loop (the faults of a chaos run, say)."""
    listed = list(items)
    with _progress() as progress:
        task = progress.add_task(title, total=total if total is not None else len(listed))
        for item in listed:
            progress.update(task, description=f"{title}: {item}")
            yield item
            progress.advance(task)


@contextmanager
def countdown(title: str, total: int) -> Iterator[Callable[[int], None]]:
    """A bar that fills as a count falls to zero (a replayed group's lag): call the function
    given with the count still left."""
    with _progress() as progress:
        task = progress.add_task(title, total=max(total, 1))

        def left(count: int) -> None:
            progress.update(task, completed=max(total - count, 0))

        yield left


class PhaseBar:
    """`phases` for a run whose phases are spread over one long function: each call prints the
    phase's line (as the run always did) and moves the bar on; `done()` ends it."""

    def __init__(self, title: str, total: int) -> None:
        self._progress = _progress()
        self._task = self._progress.add_task(title, total=total)
        self._title = title
        self._started = 0
        self._live = False

    def __call__(self, line: str) -> None:
        if not self._live:  # drawn from the first phase on, not when the module is imported
            self._progress.start()
            self._live = True
        self._progress.update(self._task, description=f"{self._title}: {line}", completed=self._started)
        self._started += 1
        print(line, flush=True)  # standard output, as before; rich keeps the bar below it

    def done(self) -> None:
        if self._live:
            self._progress.update(self._task, description=f"{self._title}: done", completed=self._started)
            self._progress.stop()
            self._live = False
