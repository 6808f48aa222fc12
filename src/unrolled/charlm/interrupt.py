"""Ctrl-C during a run: stop at a window edge, save, then score, unless asked twice."""
from __future__ import annotations

import signal
import sys
import threading
from typing import Callable


class SkipScoring(Exception):
    """Raised inside a validation or test pass by a Ctrl-C that asks to skip it."""


class Interrupt:
    """Ctrl-C during a run: the first asks the loop to stop at the next window edge (so the
    checkpoint is whole), says so at once, and the run saves `last` before it scores anything;
    a second one skips the scoring (the pass under way ends at once), never the save."""

    def __init__(self):
        self.requested = False  # stop at the next window edge
        self.skip_scoring = False  # no more validation or test passes
        self.training = True  # the loop still runs (a first Ctrl-C then stops it, scoring or not)
        self._in_scoring = False
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self._in_scoring and (self.requested or not self.training):
            self.skip_scoring = True
            print("\nunrolled: skipping the scoring (the checkpoint is saved)", file=sys.stderr, flush=True)
            raise SkipScoring
        if not self.requested:
            self.requested = True
            print("\nunrolled: stopping at the end of this window: saving the last checkpoint, then scoring "
                  "validation; Ctrl-C again to skip the scoring", file=sys.stderr, flush=True)
        elif not self.skip_scoring:
            self.skip_scoring = True
            print("\nunrolled: the scoring will be skipped; the checkpoint is still saved", file=sys.stderr, flush=True)

    def score(self, scoring: Callable[[], float | None]) -> float | None:
        """`scoring()`, or None when Ctrl-C skipped it (before or while it ran)."""
        if self.skip_scoring:
            return None
        self._in_scoring = True
        try:
            return scoring()
        except SkipScoring:
            return None
        finally:
            self._in_scoring = False

    def __exit__(self, *exc):
        if self._old is not None:
            # After a Ctrl-C the run is ending: a late second one must not become a traceback.
            signal.signal(signal.SIGINT, signal.SIG_IGN if self.requested else self._old)
