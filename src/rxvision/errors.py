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


def find_user_error(exc: BaseException | None) -> RxVisionError | None:
    """The RxVisionError behind ``exc`` (itself, or one it was raised from or during), if any:
    orchestrators may wrap a step's exception in their own."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, RxVisionError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None
