"""Rows per second of the clean and quality stages on real text (Debian's fortunes, 8 languages),
each against a baseline run in the same process on the same rows.

* clean: corpusmill's ``Clean`` (Arrow kernels, Python only on flagged rows) against the same
  steps written one row at a time in plain Python (ftfy's encoding fixes on every row, ``re`` for
  control/invisible characters and whitespace, ``unicodedata``, the same markup converter on rows
  where a regex finds a tag).
* quality: corpusmill's ``Quality`` with the fineweb preset (31 rules, every signal computed for
  every row) against datatrove's GopherRepetitionFilter -> GopherQualityFilter ->
  C4QualityFilter -> FineWebQualityFilter, called document by document as datatrove's runner
  does (a document stops at the first filter that drops it). datatrove needs
  ``pip install -e .[bench]`` (datatrove, spaCy for its English word tokenizer); without it the
  quality baseline is skipped and the table says so.

Quality runs twice: on all fortunes (most are short, so datatrove stops after its first check),
and on the fortunes of at least 50 words (where both sides must look at every rule).

    python bench/bench_clean_quality.py [--quick]
"""

from __future__ import annotations

import argparse
import html
import re
import sys
import time
import unicodedata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyarrow as pa  # noqa: E402

from bench.common import TreeMonitor, fortunes, save_result  # noqa: E402
from corpusmill.dataprep.clean import Clean, CleanConfig  # noqa: E402
from corpusmill.dataprep.markup import markup_to_text  # noqa: E402
from corpusmill.dataprep.quality import Quality, QualityConfig  # noqa: E402
from corpusmill.stage import BatchInfo, RunInfo  # noqa: E402

BATCH = 8192  # the runner's default batch_rows


def run_stage(stage, table: pa.Table) -> tuple[float, dict[str, str]]:
    """Seconds to push ``table`` through ``stage`` in runner-sized batches, and id -> text of the
    rows kept."""
    kept: list[pa.Table] = []
    t0 = time.perf_counter()
    for start in range(0, table.num_rows, BATCH):
        kept.append(stage.process(table.slice(start, BATCH), BatchInfo(0, start)).kept)
    seconds = time.perf_counter() - t0
    return seconds, {i: t for k in kept for i, t in zip(k.column("id").to_pylist(), k.column("text").to_pylist())}


# ----------------------------------------------------------------------------- clean baseline

_CONTROL = re.compile("\x1b(?:\\[[0-9;?]*[ -/]*[@-~]|[@-Z\\\\-_])|[\x00-\x08\x0e-\x1f\x7f\x80-\x9f]")
_INVISIBLE = re.compile("[\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\u00ad\u180e\ufff9-\ufffb]")
_TAG = re.compile(r"</?[A-Za-z][\w:.-]*(?:\s[^<>]*)?/?>|<!--")
_SPACES = re.compile("[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]")


def clean_row(text: str, ftfy, config) -> str:
    """The clean stage's default steps, for one row, in plain Python."""
    text = ftfy.fix_text(text, config)
    text = _CONTROL.sub("", text)
    text = _INVISIBLE.sub("", text)
    if _TAG.search(text):
        text = markup_to_text(text)
    elif "&" in text:
        text = html.unescape(text)
    text = unicodedata.normalize("NFC", text)
    text = re.sub("\r\n?|[\x0b\x0c\x85\u2028]", "\n", text).replace("\u2029", "\n\n")
    text = _SPACES.sub(" ", text)
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return re.sub(r"^(?:[ \t]*\n)+", "", text).rstrip()


def clean_baseline(texts: list[str]) -> tuple[float, list[str]]:
    import ftfy

    config = ftfy.TextFixerConfig(
        unescape_html=False, remove_terminal_escapes=False, fix_latin_ligatures=False,
        fix_character_width=False, uncurl_quotes=False, fix_line_breaks=False,
        remove_control_chars=False, normalization=None, explain=False,
    )
    t0 = time.perf_counter()
    out = [clean_row(t, ftfy, config) for t in texts]
    return time.perf_counter() - t0, out


# ----------------------------------------------------------------------------- quality baseline


def datatrove_filters():
    """datatrove's FineWeb filter chain, or the reason it cannot run here."""
    try:
        from datatrove.data import Document
        from datatrove.pipeline.filters import (
            C4QualityFilter, FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter,
        )

        filters = [GopherRepetitionFilter(), GopherQualityFilter(), C4QualityFilter(filter_no_terminal_punct=False),
                   FineWebQualityFilter()]
        # the English word tokenizer loads on first use (spaCy); do that outside the timing
        for f in filters:
            f.filter(Document(text="A warm-up sentence for the tokenizer. " * 20, id="warmup"))
        return filters, Document, None
    except Exception as err:  # ImportError, or a tokenizer that cannot load offline
        return None, None, f"{type(err).__name__}: {err}"


def quality_baseline(ids: list[str], texts: list[str], filters, Document) -> tuple[float, set[str]]:
    kept = set()
    t0 = time.perf_counter()
    for i, text in zip(ids, texts):
        doc = Document(text=text, id=i)
        for f in filters:
            verdict = f.filter(doc)
            if verdict is not True and (verdict is False or not verdict[0]):
                break
        else:
            kept.add(i)
    return time.perf_counter() - t0, kept


# ----------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="10,000 rows instead of all (~92,000)")
    args = ap.parse_args()

    rows = fortunes()
    if args.quick:
        rows = rows[:: max(1, len(rows) // 10_000)][:10_000]
    texts = [r["text"] for r in rows]
    table = pa.table({
        "id": [f"f{i}" for i in range(len(texts))],
        "text": texts,
        "source": [f"fortunes-{r['lang']}.jsonl:{i + 1}" for i, r in enumerate(rows)],
        "meta": pa.nulls(len(texts), pa.string()),
    })
    mb = sum(len(t.encode()) for t in texts) / 1e6
    run = RunInfo("bench", 0)
    results: list[dict] = []

    def record(stage: str, impl: str, seconds: float, n: int, size_mb: float, kept: int, baseline=False, **extra):
        results.append({"stage": stage, "implementation": impl, "rows": n, "seconds": round(seconds, 3),
                        "rows_per_s": round(n / seconds, 1), "mb_per_s": round(size_mb / seconds, 2),
                        "kept": kept, "baseline": baseline, **extra})

    with TreeMonitor() as rss:
        # clean (a warm-up batch first: imports and regex compilation are not what we measure)
        stage = Clean(CleanConfig(), name="clean", run=run)
        stage.process(table.slice(0, 500), BatchInfo(0, 0))
        seconds, kept = run_stage(stage, table)
        record("clean", "corpusmill Clean (defaults)", seconds, len(texts), mb, len(kept))
        seconds, cleaned = clean_baseline(texts)
        same = sum(kept.get(f"f{i}", "") == t for i, t in enumerate(cleaned)) / len(texts)
        record("clean", "per-row Python, same steps", seconds, len(texts), mb, sum(1 for t in cleaned if t.strip()),
               baseline=True, same_output=round(same, 4))

        # quality, on all rows and on the rows of >= 50 words
        filters, Document, why_not = datatrove_filters()
        long_idx = [i for i, t in enumerate(texts) if len(t.split()) >= 50]
        subsets = {"all": table, ">=50 words": table.take(long_idx)}
        stage = Quality(QualityConfig(), name="quality", run=run)
        stage.process(table.slice(0, 500), BatchInfo(0, 0))
        for label, tbl in subsets.items():
            ids, txt = tbl.column("id").to_pylist(), tbl.column("text").to_pylist()
            size = sum(len(t.encode()) for t in txt) / 1e6
            seconds, kept = run_stage(stage, tbl)
            record(f"quality ({label})", "corpusmill Quality (fineweb preset)", seconds, len(txt), size, len(kept))
            if filters is not None:
                seconds, kept_b = quality_baseline(ids, txt, filters, Document)
                # how often both keep or both reject a row (the definitions differ in details,
                # see docs/cleaning-and-quality.md)
                agree = sum((i in kept) == (i in kept_b) for i in ids) / len(ids)
                record(f"quality ({label})", "datatrove Gopher+C4+FineWeb filters", seconds, len(txt), size,
                       len(kept_b), baseline=True, same_decision=round(agree, 4))

    print(f"\nfortunes: {len(texts):,} rows, {mb:.1f} MB of text; batch {BATCH} rows; one process\n")
    print("| stage | implementation | rows | rows/s | MB/s | kept | speed-up vs baseline |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in results:
        base = next((b for b in results if b["stage"] == r["stage"] and b["baseline"]), None)
        ratio = "1.0 (baseline)" if r["baseline"] else (f"{r['rows_per_s'] / base['rows_per_s']:.1f}x" if base else "n/a")
        print(f"| {r['stage']} | {r['implementation']} | {r['rows']:,} | {r['rows_per_s']:,.0f} | "
              f"{r['mb_per_s']:.2f} | {r['kept']:,} | {ratio} |")
    for r in results:
        if "same_output" in r:
            print(f"clean: both implementations give the same text for {100 * r['same_output']:.2f}% of rows")
        if "same_decision" in r:
            print(f"{r['stage']}: corpusmill and datatrove take the same keep/reject decision on "
                  f"{100 * r['same_decision']:.1f}% of rows")
    if why_not:
        print(f"\nquality baseline skipped: datatrove could not run ({why_not}); pip install -e '.[bench]'")
    print(f"\npeak RSS {rss.peak_mb} MB")
    save_result("clean_quality", {
        "quick": args.quick, "rows": len(texts), "text_mb": round(mb, 2), "batch_rows": BATCH,
        "results": results, "datatrove": None if why_not else "ok", "datatrove_unavailable": why_not,
        "peak_rss_mb": rss.peak_mb,
    })


if __name__ == "__main__":
    main()
