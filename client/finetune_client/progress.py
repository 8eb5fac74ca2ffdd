"""A one-line progress bar on stderr: redrawn in place on a terminal, a plain line every few seconds otherwise (CI
logs), with messages printed above it."""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO


class ProgressBar:
    def __init__(self, stream: TextIO | None = None, *, width: int = 24, log_interval: float = 5.0) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.is_tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = 0.1 if self.is_tty else log_interval
        self.last_draw = 0.0
        self.line = ""
        self.shown = ""  # the line last drawn
        self.drawn = False

    def update(self, fraction: float | None, text: str = "", *, force: bool = False) -> None:
        """Show `fraction` (0..1, None when unknown) and `text`."""
        if fraction is None:
            self.line = text
        else:
            fraction = min(1.0, max(0.0, fraction))
            filled = round(fraction * self.width)
            self.line = f"[{'#' * filled}{'.' * (self.width - filled)}] {fraction * 100:3.0f}%  {text}".rstrip()
        now = time.monotonic()
        if force or now - self.last_draw >= self.interval:
            self.last_draw = now
            self._draw()

    def message(self, text: str) -> None:
        """A line printed above the bar (the bar is drawn again under it; in a log, the bar's pending state first)."""
        if not self.is_tty and self.line and self.line != self.shown:
            self._draw()
        self._clear()
        print(text, file=self.stream, flush=True)
        if self.is_tty and self.line:
            self._draw()

    def finish(self) -> None:
        """Leave the last state on screen and end the line."""
        if self.line and (self.is_tty or self.line != self.shown):
            self._draw()
        if self.is_tty and self.line:
            print(file=self.stream, flush=True)
        self.line = ""

    def _draw(self) -> None:
        self.shown = self.line
        if self.is_tty:
            columns = shutil.get_terminal_size((100, 20)).columns - 1
            self.stream.write("\r" + self.line[:columns].ljust(columns))
            self.stream.flush()
        elif self.line:
            print(self.line, file=self.stream, flush=True)
        self.drawn = True

    def _clear(self) -> None:
        if self.is_tty and self.drawn:
            columns = shutil.get_terminal_size((100, 20)).columns - 1
            self.stream.write("\r" + " " * columns + "\r")


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = max(0, int(round(seconds)))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
