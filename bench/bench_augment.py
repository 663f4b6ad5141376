"""Augmenter throughput: rows per second of each augmenter on real English text, and of the whole
``augment`` stage on 2 workers.

Per augmenter, on the same fortunes, one variant per row:

* ours: the augmenter as the stage calls it, on a batch of rows (a seed per row; nlpaug inside
  ``isolated_random``, re-seeded per row);
* baseline: nlpaug's own ``augment(list_of_texts)`` on the same settings, global random state
  and no per-row seeding, for the augmenters nlpaug provides. EDA, WordNet synonyms and sentence
  shuffle are our own code (nlpaug's WordNet augmenter needs NLTK downloads and a POS tagger,
  which cannot run offline); their baseline is nlpaug's closest operation where one exists
  (EDA's random swap / deletion vs nlpaug RandomWordAug swap / delete), else none.

The stage row: ``split`` + ``augment`` (EDA n=4 + char_keyboard + word_random) through the
local executor with 2 workers, input rows per second end to end.

    python bench/bench_augment.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import DATA_DIR, fortunes, save_result  # noqa: E402


def rows_per_second(fn, texts) -> float:
    t0 = time.perf_counter()
    fn(texts)
    return len(texts) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="500 rows per augmenter, 3,000 through the stage")
    args = ap.parse_args()
    n, n_stage = (500, 3000) if args.quick else (2000, 12000)

    from corpusmill.augment.augmenters import (CharSpec, EdaSpec, SentenceShuffleSpec, SynonymSpec, WordSpec, build,
                                               row_seed)

    english = [r["text"] for r in fortunes() if r["lang"] == "en" and len(r["text"]) >= 20]
    texts = english[:n]
    specs = {
        "eda": EdaSpec(kind="eda", n=1),
        "eda (rs only)": EdaSpec(kind="eda", n=1, operations=("rs",)),
        "eda (rd only)": EdaSpec(kind="eda", n=1, operations=("rd",)),
        "synonym": SynonymSpec(kind="synonym"),
        "sentence_shuffle": SentenceShuffleSpec(kind="sentence_shuffle"),
        "char_keyboard": CharSpec(kind="char_keyboard"),
        "char_ocr": CharSpec(kind="char_ocr"),
        "char_random (swap)": CharSpec(kind="char_random", action="swap"),
        "word_random (swap)": WordSpec(kind="word_random", action="swap"),
        "word_random (delete)": WordSpec(kind="word_random", action="delete"),
        "word_split": WordSpec(kind="word_split"),
    }

    def baseline(name, ours):
        from corpusmill.augment.augmenters import _nlpaug

        naw = _nlpaug("word")  # as the stage imports it: without torch

        if name == "eda (rs only)":
            return naw.RandomWordAug(action="swap", aug_p=0.1)
        if name == "eda (rd only)":
            return naw.RandomWordAug(action="delete", aug_p=0.1)
        return getattr(ours, "aug", None)

    results = []
    for name, spec in specs.items():
        ours = build(spec)
        ours.variants(texts[0], 0)  # warm-up: WordNet index, nlpaug import
        ours_rps = rows_per_second(lambda ts: ours.variants_batch(ts, [row_seed(0, str(i), ours.name) for i in range(len(ts))]), texts)
        base = baseline(name, ours)
        base_rps = rows_per_second(lambda ts: base.augment(ts), texts) if base is not None else None
        results.append({"augmenter": name, "rows_per_second": round(ours_rps, 1),
                        "nlpaug_rows_per_second": round(base_rps, 1) if base_rps else None,
                        "ratio": round(ours_rps / base_rps, 2) if base_rps else None})
        print(f"{name:22s} ours {ours_rps:9.1f} rows/s   nlpaug {base_rps or float('nan'):9.1f} rows/s", flush=True)

    # the whole stage, 2 workers
    import yaml

    from corpusmill.pipelines import run_pipeline

    work = DATA_DIR / "augment_bench"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rows = english[:n_stage]
    while len(rows) < n_stage:  # fewer English fortunes than asked: repeat with a marker (other rows)
        rows += [f"{t} ({len(rows)})" for t in english[: n_stage - len(rows)]]
    (work / "d.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in rows))
    augmenters = [{"kind": "eda", "n": 4}, {"kind": "char_keyboard"}, {"kind": "word_random", "action": "delete"}]
    cfg = {"dataset": "augbench", "inputs": [{"path": "d.jsonl"}], "execution": {"shard_bytes": 256 << 10},
           "steps": [{"split": {}}, {"augment": {"augmenters": augmenters, "max_per_row": 0}}]}
    (work / "p.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    t0 = time.perf_counter()
    res = run_pipeline(work / "p.yaml", store=work / "store", workers=2)
    seconds = time.perf_counter() - t0
    st = next(s for s in res.manifest["stages"] if s["name"] == "augment")
    stage = {"rows": len(rows), "shards": res.manifest["shards"], "workers": 2, "seconds": round(seconds, 1),
             "input_rows_per_second": round(len(rows) / seconds, 1), "candidates": st["added"],
             "new_rows": st["counters"]["new_rows"], "rejected": st["rejected"]}
    print()
    print("| augmenter | ours rows/s | nlpaug rows/s | ratio |")
    print("|---|---:|---:|---:|")
    for r in results:
        print(f"| {r['augmenter']} | {r['rows_per_second']:,.0f} | "
              f"{'' if r['nlpaug_rows_per_second'] is None else format(r['nlpaug_rows_per_second'], ',.0f')} | "
              f"{'' if r['ratio'] is None else r['ratio']} |")
    print(f"\nstage (split + augment: eda n=4, char_keyboard, word_random delete), {len(rows):,} rows, "
          f"{stage['shards']} shards, 2 workers: {seconds:.1f}s, {stage['input_rows_per_second']:,.0f} input rows/s, "
          f"{stage['candidates']:,} candidates, {stage['new_rows']:,} new rows")
    save_result("augment", {"quick": args.quick, "rows_per_augmenter": len(texts), "augmenters": results, "stage": stage})


if __name__ == "__main__":
    main()
