"""Imported by the server the local executor's workers are forked from (see
:mod:`corpusmill.pipelines.workers`), never by a command itself: it does once, before any worker
exists, the set-up each worker would otherwise do on its first rows (lookup tables of the text
normaliser, ftfy's character data and regular expressions: ~0.2 s per worker). First of all it
ties the server's life to the command that started it (:func:`~corpusmill.pipelines.workers.die_with_parent`)."""

from __future__ import annotations


def _warm() -> None:
    from corpusmill.dataprep import clean, textnorm
    from corpusmill.pipelines.workers import skip_pandas_probe

    skip_pandas_probe()

    textnorm.warm_up()
    # the mojibake repair on a row that needs it: ftfy loads its tables and compiles its patterns
    import pyarrow as pa

    clean._fix_mojibake(pa.array(["caf\u00c3\u00a9 \u00e2\u20ac\u201d d\u00c3\u00a9j\u00c3\u00a0 vu"]))


from corpusmill.pipelines.workers import die_with_parent

die_with_parent()

try:
    _warm()
except Exception:  # noqa: BLE001 - a warm-up must never stop the server: each worker then sets up on its own
    pass
