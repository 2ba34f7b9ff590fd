"""Progress bars for long loops (rich), switchable off for library callers and tests."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")

_console = Console(stderr=True)
console = _console


def track(
    items: Iterable[T], description: str, total: int | None = None, enabled: bool = True
) -> Iterator[T]:
    """Iterate over ``items`` with a progress bar on stderr (no bar when ``enabled`` is False)."""
    if not enabled:
        yield from items
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=_console, transient=False) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)


class Bar:
    """A single progress bar whose text can change as work goes (e.g. a running loss).

    >>> with Bar(3, "epoch 1", enabled=False) as bar:
    ...     bar.advance(1, "loss 0.69")
    """

    def __init__(self, total: int, description: str, enabled: bool = True) -> None:
        self.enabled = enabled
        self.description = description
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self.total = total

    def __enter__(self) -> Bar:
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                console=_console,
                transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(self.description, total=self.total, status="")
        return self

    def advance(self, n: int = 1, status: str = "") -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=n, status=status)  # type: ignore[arg-type]

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)
