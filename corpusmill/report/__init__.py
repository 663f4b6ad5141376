"""Reports people look at: every version's ``report.html`` and ``card.md``, and ``eval.html``.

Plots are hand-written inline SVG (:mod:`corpusmill.report.svg`): no plotting library, nothing
fetched when a page opens, and a report costs a bounded read of the version's files.
"""

from __future__ import annotations

from pathlib import Path

REPORT = "report.html"
CARD = "card.md"


def write_version_docs(version) -> tuple[Path, Path]:
    """Write ``report.html`` and ``card.md`` into a version's folder (published or being assembled).

    Both are functions of the version's files only, so rewriting them gives the same bytes."""
    from corpusmill.report import card, dataset, facts
    from corpusmill.store import atomic_write_text

    m = version.manifest
    found = facts.gather(version)
    stats = version.stats
    report = version.path / REPORT
    atomic_write_text(report, dataset.render(m, stats, found, card.license_warnings(m)))
    card_path = version.path / CARD
    atomic_write_text(card_path, card.render(m, stats, found))
    return report, card_path


def publish_docs(version) -> None:
    """:func:`write_version_docs` at publish time. A report that cannot be drawn must not cost the
    run that produced the data: the error is printed and ``corpusmill datasets report`` retries.
    A full disk (ENOSPC) is raised: the version is not published, and the rerun writes both."""
    try:
        write_version_docs(version)
    except Exception as err:  # noqa: BLE001 - any failure here is a report bug, never a data problem
        import sys

        from corpusmill.errors import is_disk_full

        if is_disk_full(err):  # but a full disk is no report bug: nothing more can be written, the run stops
            raise

        print(f"corpusmill: warning: report.html/card.md not written for {version.dataset}@{version.id}: "
              f"{type(err).__name__}: {err}; run 'corpusmill datasets report {version.dataset}@{version.id}' "
              "to retry", file=sys.stderr)
