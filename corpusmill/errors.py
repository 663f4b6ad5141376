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


def is_disk_full(err: BaseException) -> bool:
    """``err`` says the filesystem has no space left (ENOSPC) or the user's quota is spent (EDQUOT);
    pyarrow's writers raise an OSError with the same errno."""
    import errno

    return isinstance(err, OSError) and err.errno in {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def reports_full_disk(fn):
    """Decorate a function that writes into the store given as its ``store`` argument (a run, a
    refresh): a full disk while it runs becomes a :class:`StoreError` (one line, exit 2) naming
    the file, ENOSPC, the store and the fix, instead of a traceback. What was written stays
    consistent: a version is published by one rename of a finished folder, so it is there whole
    or not at all, and the finished shards of the work folder are kept for the rerun."""
    import functools
    import inspect

    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except OSError as err:
            if not is_disk_full(err):
                raise
            from corpusmill.locks import store_path_error

            store = signature.bind_partial(*args, **kwargs).arguments.get("store")
            raise StoreError(f"{store_path_error(err, str(getattr(store, 'location', store)))}; nothing was "
                             "published, and the same command run again resumes the finished shards") from None

    return wrapper
