"""The one exception type for errors a user can cause and fix."""

from __future__ import annotations


class RxVisionError(Exception):
    """A user-facing error: says what is wrong and what to do about it.

    run.py prints ``str(err)`` (one message, no traceback) and exits non-zero.
    """

    def __init__(self, problem: str, hint: str | None = None) -> None:
        self.problem = problem
        self.hint = hint
        super().__init__(problem if not hint else f"{problem}\n  -> {hint}")
