"""One error type for everything a user can get wrong.

`LIGError` is a `ValueError` whose message is a single line naming the problem and,
where there is a closed set of choices, the allowed values. The CLI prints it as
`error: <message>` and exits with status 2; library callers catch `ValueError`.
"""

from __future__ import annotations

from collections.abc import Iterable


class LIGError(ValueError):
    """A user-facing error with a one-line message."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def choice_error(what: str, got: object, allowed: Iterable[object]) -> LIGError:
    """`Unknown <what> 'x'. Allowed: a, b, c. Got: 'x'` — the reference's wording, one line."""
    allowed_sorted = sorted(str(a) for a in allowed)
    return LIGError(f"Unknown {what} {got!r}. Allowed: {', '.join(allowed_sorted)}. Got: {got!r}")


class BadText(LIGError):
    """Text `index` of a batch cannot be explained (`reason`: the one-line LIGError)."""

    def __init__(self, index: int, reason: str):
        super().__init__(f"text {index}: {reason}")
        self.index, self.reason = index, reason
