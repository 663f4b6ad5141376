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
