"""Errors a user can fix. The CLI prints these without a traceback."""

from __future__ import annotations


class CorpusmillError(Exception):
    """A problem the user can fix; the message says what and how."""


class ConfigError(CorpusmillError):
    """A pipeline or option problem, found before anything ran.

    Carries every problem at once so the user fixes them in one go.
    """

    def __init__(self, problems: list[str], *, source: str = "pipeline") -> None:
        self.problems = list(problems)
        self.source = source
        lines = [f"{source}: {len(self.problems)} problem(s), nothing was run:"]
        lines += [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


class StoreError(CorpusmillError):
    """A dataset reference that does not resolve, or a store that is unusable."""


class AccountingError(RuntimeError):
    """A stage broke the invariant rows in = kept + rejected. This is a bug, not a user error."""
