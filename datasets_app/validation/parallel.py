"""Token counting on a second core: a forked child runs the engine's ``token_lengths`` over the batches it is sent
while the parent reads, checks and counts the rest.

The engine counter is pure Python (GIL-bound), so threads would not help; a forked child shares the loaded tokenizer
without reloading it. Batches go to the child while its backlog is short and stay in the parent otherwise, so the
two sides balance themselves. Any failure of the child is reported, never hidden: the caller gets ``None``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from training.engine.data import token_lengths

logger = logging.getLogger(__name__)

BATCH = 1000
MAX_BACKLOG = 2  # batches waiting for the child before the parent counts the next one itself
PARALLEL_MIN_BYTES = 16 * 1024**2
"""Inputs smaller than this are counted in-process (starting a child costs more than it saves)."""


def can_fork() -> bool:
    """Whether a forked helper process is possible here (Linux/macOS with the fork start method, 2+ CPUs)."""
    return "fork" in multiprocessing.get_all_start_methods() and (os.cpu_count() or 1) >= 2


def _child_main(tokenizer: Any, chat_template: Any, jobs: Any, results: Any) -> None:
    def examples() -> Iterator[Mapping[str, Any]]:
        while True:
            batch = jobs.get()
            if batch is None:
                return
            yield from batch

    try:
        results.send(("ok", token_lengths(tokenizer, examples(), chat_template=chat_template, batch_size=BATCH)))
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
        results.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        results.close()


class SplitCounter:
    """Counts token lengths of a stream of examples, part in this process and part in a forked child."""

    def __init__(self, tokenizer: Any, chat_template: Any) -> None:
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        ctx = multiprocessing.get_context("fork")
        self._jobs = ctx.Queue()
        self._results, child_end = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(
            target=_child_main, args=(tokenizer, chat_template, self._jobs, child_end), daemon=True
        )
        self._proc.start()
        child_end.close()
        self._owner = bytearray()  # per example: 0 counted here, 1 counted by the child
        self._sent = 0

    def _backlog(self) -> int:
        try:
            return int(self._jobs.qsize())
        except NotImplementedError:  # pragma: no cover - macOS: alternate instead
            return 0 if self._sent % 2 == 0 else MAX_BACKLOG

    def _route(self, examples: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
        owner = self._owner
        batch: list[Mapping[str, Any]] = []
        to_child = False
        for i, example in enumerate(examples):
            if i % BATCH == 0:
                if batch:
                    self._jobs.put(batch)
                    self._sent += 1
                    batch = []
                to_child = self._backlog() < MAX_BACKLOG
            if to_child:
                owner.append(1)
                batch.append(example)
            else:
                owner.append(0)
                yield example
        if batch:
            self._jobs.put(batch)
            self._sent += 1

    def count(self, examples: Iterable[Mapping[str, Any]]) -> list[int] | None:
        """Token lengths of ``examples`` in order, or None when the child failed (logged)."""
        try:
            mine = token_lengths(self.tokenizer, self._route(examples), chat_template=self.chat_template)
        except BaseException:
            self._jobs.put(None)
            self._wait()
            raise
        self._jobs.put(None)
        status, theirs = self._wait()
        if status != "ok":
            logger.error("token counting in the helper process failed: %s", theirs)
            return None
        merged: list[int] = []
        a = b = 0
        for who in self._owner:
            if who:
                merged.append(theirs[b])
                b += 1
            else:
                merged.append(mine[a])
                a += 1
        if a != len(mine) or b != len(theirs):  # pragma: no cover - both sides count every example they get
            logger.error("token counting mismatch: %d/%d here, %d/%d in the helper", a, len(mine), b, len(theirs))
            return None
        logger.info("counted tokens of %d rows here and %d in a helper process", a, b)
        return merged

    def _wait(self) -> tuple[str, Any]:
        try:
            while not self._results.poll(0.5):
                if not self._proc.is_alive():
                    if self._results.poll(0):
                        break
                    return "error", f"the helper process exited with code {self._proc.exitcode}"
            return self._results.recv()  # type: ignore[no-any-return]
        except (EOFError, OSError) as exc:
            return "error", str(exc)
        finally:
            self.close()

    def close(self) -> None:
        """Stop the child (if still running) and release the queue."""
        self._proc.join(timeout=5)
        if self._proc.is_alive():  # pragma: no cover - only after a failure
            self._proc.kill()
            self._proc.join(timeout=5)
        self._results.close()
        self._jobs.close()
        self._jobs.join_thread()
