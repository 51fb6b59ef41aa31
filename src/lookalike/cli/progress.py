"""What `lookalike index` shows while it works: the sync's phases (listing, loading model,
embedding, training whitening, building index) as a live bar on a terminal, or as plain lines
every few seconds when the output is a file or a pipe (a log, CI)."""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

INTERVAL_ENV = "LOOKALIKE_PROGRESS_SECONDS"
DEFAULT_INTERVAL = 10.0


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL)))
    except ValueError:
        return DEFAULT_INTERVAL


def _eta(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class PlainProgress:
    """One line per phase and, while embedding, one line every `interval` seconds."""

    def __init__(self, stream: TextIO, interval: float | None = None) -> None:
        self.stream = stream
        self.interval = _interval() if interval is None else interval
        self.phase = ""
        self.embed_start = 0.0
        self.last_line = 0.0

    def _say(self, text: str) -> None:
        self.stream.write(f"lookalike index: {text}\n")
        self.stream.flush()

    def __call__(self, p) -> None:  # noqa: ANN001 - lookalike SyncProgress
        now = time.perf_counter()
        if p.phase != self.phase:
            self.phase = p.phase
            self.last_line = now
            if p.phase == "embedding":
                self.embed_start = now
                self._say(
                    f"embedding {p.total} new or changed file{'s' if p.total != 1 else ''}"
                    if p.total
                    else "embedding: nothing new or changed"
                )
            elif p.phase == "listing":
                self._say("listing files")
            else:
                self._say(p.phase)
            return
        if (
            p.phase == "embedding"
            and p.done
            and (now - self.last_line >= self.interval or p.done == p.total)
        ):
            self.last_line = now
            elapsed = now - self.embed_start
            rate = p.done / elapsed if elapsed > 0 else 0.0
            left = (
                f", about {_eta((p.total - p.done) / rate)} left"
                if rate and p.done < p.total
                else ""
            )
            self._say(
                f"embedding {p.done}/{p.total} ({100 * p.done // max(p.total, 1)} %), "
                f"{rate:.1f} images/s{left}"
            )

    def close(self) -> None:
        pass


class BarProgress:
    """A rich live display: the phase, a bar while embedding, images/s and time left."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("{task.description:<18}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self.bar.start()
        self.task = self.bar.add_task("listing", total=None, rate="")
        self.phase = "listing"
        self.embed_start = time.perf_counter()

    def __call__(self, p) -> None:  # noqa: ANN001 - lookalike SyncProgress
        now = time.perf_counter()
        if p.phase != self.phase:
            self.phase = p.phase
            if p.phase == "embedding":
                self.embed_start = now
            total = p.total if p.phase == "embedding" and p.total else None
            self.bar.reset(self.task, total=total, description=p.phase, rate="")
            return
        if p.phase == "embedding":
            elapsed = now - self.embed_start
            rate = f"{p.done / elapsed:.1f} images/s" if elapsed > 0 and p.done else ""
            self.bar.update(self.task, total=p.total, completed=p.done, rate=rate)

    def close(self) -> None:
        self.bar.stop()


def sync_progress(quiet: bool) -> PlainProgress | BarProgress | None:
    """The right display for stderr: none when `quiet` (--json), a bar on a terminal, plain
    lines otherwise."""
    if quiet:
        return None
    if sys.stderr.isatty():
        return BarProgress()
    return PlainProgress(sys.stderr)
