"""Language identification on real labelled multilingual text: Debian's fortunes (cs, de, en,
es, it, pl, pt, ru; the label is the package's language).

For every backend of the ``language`` stage, and for plain ``langdetect.detect`` (the baseline,
as most pipelines call it), in the same process on the same texts:

* accuracy per language of the top guess (no abstention), for all texts and for texts under 50
  characters;
* with the stage's defaults (min_chars, min_score): share abstained (und) and accuracy of the rest;
* docs/s of the stage's ``process`` (vectorised preparation included) and of the baseline,
  timed in turns on chunks of 1,000 texts so that load from other processes hits all alike;
* single words taken from the texts: share abstained and accuracy of what is not abstained,
  plus a sweep of min_chars x min_score for the default backend.

    python bench/bench_language.py [--quick] [--per-lang N] [--words N]
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from bench.common import fortunes, save_result  # noqa: E402
from corpusmill.dataprep.language import Language, LanguageConfig  # noqa: E402
from corpusmill.stage import BatchInfo, RunInfo  # noqa: E402

BACKENDS = ["fasttext", "py3langid", "langdetect"]
DEFAULT = LanguageConfig().backend
BATCH = 8192
CHUNK = 1000  # texts per turn in the interleaved timing
BASELINE = "langdetect.detect (baseline)"
SHORT = 50
WORD = re.compile(r"[^\W\d_]+")
SWEEP_CHARS = (1, 4, 8)
SWEEP_SCORES = (0.5, 0.7, 0.8, 0.9, 0.95)


def sample(rows: list[dict], per_lang: int, seed: int = 0) -> list[dict]:
    by_lang: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_lang[r["lang"]].append(r)
    rng = random.Random(seed)
    out = []
    for lang in sorted(by_lang):
        group = by_lang[lang]
        out += group if len(group) <= per_lang else rng.sample(group, per_lang)
    return out


def single_words(rows: list[dict], n: int, seed: int = 1) -> list[tuple[str, str]]:
    """One random word from each of n random texts, labelled with the text's language."""
    rng = random.Random(seed)
    words = []
    for r in rng.sample(rows, min(n * 2, len(rows))):
        ws = WORD.findall(r["text"])
        if ws:
            words.append((rng.choice(ws), r["lang"]))
        if len(words) == n:
            break
    return words


def stage(backend: str, **options) -> Language:
    return Language(LanguageConfig(backend=backend, keep_und=True, **options), name="language", run=RunInfo("bench", 0))


def run_stage(st: Language, texts: list[str]) -> tuple[np.ndarray, np.ndarray, float]:
    """lang, lang_score and seconds of the stage's process() over batches of BATCH rows."""
    langs, scores, seconds = [], [], 0.0
    for start in range(0, len(texts), BATCH):
        chunk = texts[start:start + BATCH]
        batch = pa.table({"id": [str(i) for i in range(len(chunk))], "text": chunk})
        t0 = time.perf_counter()
        out = st.process(batch, BatchInfo(0, start))
        seconds += time.perf_counter() - t0
        langs += out.kept.column("lang").to_pylist()
        scores.append(out.kept.column("lang_score").to_numpy())
    return np.array(langs, dtype=object), np.concatenate(scores) if scores else np.zeros(0), seconds


def langdetect_baseline(texts: list[str]) -> tuple[np.ndarray, float]:
    """``langdetect.detect`` as usually called: the module's factory, its global seed set to 0."""
    from langdetect import DetectorFactory, detect
    from langdetect.lang_detect_exception import LangDetectException

    DetectorFactory.seed = 0
    out = []
    t0 = time.perf_counter()
    for t in texts:
        try:
            code = detect(t)
        except LangDetectException:
            code = "und"
        out.append("zh" if code.startswith("zh-") else code)
    return np.array(out, dtype=object), time.perf_counter() - t0


def accuracy(pred: np.ndarray, gold: np.ndarray, mask: np.ndarray | None = None) -> float:
    if mask is not None:
        pred, gold = pred[mask], gold[mask]
    return float((pred == gold).mean()) if len(gold) else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="300 texts per language, 1000 words")
    ap.add_argument("--per-lang", type=int, default=2500, help="texts per language (pt has 2,506)")
    ap.add_argument("--words", type=int, default=5000, help="single words to test")
    args = ap.parse_args()
    per_lang, n_words = (300, 1000) if args.quick else (args.per_lang, args.words)

    rows = sample(fortunes(), per_lang)
    texts = [r["text"] for r in rows]
    gold = np.array([r["lang"] for r in rows], dtype=object)
    langs = sorted(set(gold))
    short = np.array([len(t) < SHORT for t in texts])
    words = single_words(rows, n_words)
    word_texts = [w for w, _ in words]
    word_gold = np.array([g for _, g in words], dtype=object)
    print(f"{len(texts):,} fortunes ({short.sum():,} under {SHORT} characters) in {', '.join(langs)}; "
          f"{len(words):,} single words")

    raw = {b: stage(b, min_chars=0, min_score=0.0, short_chars=0) for b in BACKENDS}
    defaults = {b: stage(b) for b in BACKENDS}
    for st in defaults.values():
        run_stage(st, texts[:20])  # load the models outside the timing
    langdetect_baseline(texts[:5])

    # Speed: the machine may be shared, so the backends and the baseline take turns on each
    # chunk of texts; a busy moment slows all of them, not one.
    seconds = {name: 0.0 for name in [*BACKENDS, BASELINE]}
    decided_parts: dict[str, list[np.ndarray]] = {b: [] for b in BACKENDS}
    base_parts: list[np.ndarray] = []
    for start in range(0, len(texts), CHUNK):
        chunk = texts[start:start + CHUNK]
        for b in BACKENDS:
            d, _, sec = run_stage(defaults[b], chunk)
            decided_parts[b].append(d)
            seconds[b] += sec
        p, sec = langdetect_baseline(chunk)
        base_parts.append(p)
        seconds[BASELINE] += sec
    base_pred = np.concatenate(base_parts)

    results: dict[str, dict] = {}
    for backend in BACKENDS:
        pred, _, _ = run_stage(raw[backend], texts)
        decided = np.concatenate(decided_parts[backend])
        answered = decided != "und"
        w_decided, _, _ = run_stage(defaults[backend], word_texts)
        w_raw, _, _ = run_stage(raw[backend], word_texts)
        w_answered = w_decided != "und"
        results[backend] = {
            "accuracy": accuracy(pred, gold),
            "accuracy_short": accuracy(pred, gold, short),
            "per_lang": {lang: accuracy(pred, gold, gold == lang) for lang in langs},
            "per_lang_short": {lang: accuracy(pred, gold, short & (gold == lang)) for lang in langs},
            "abstained": float(1 - answered.mean()),
            "abstained_short": float(1 - answered[short].mean()),
            "accuracy_answered": accuracy(decided, gold, answered),
            "accuracy_answered_short": accuracy(decided, gold, answered & short),
            "docs_per_s": len(texts) / seconds[backend],
            "words_accuracy_raw": accuracy(w_raw, word_gold),
            "words_abstained": float(1 - w_answered.mean()),
            "words_accuracy_answered": accuracy(w_decided, word_gold, w_answered),
            "words_answered": int(w_answered.sum()),
        }
        print(f"  {backend}: {seconds[backend]:.1f} s for {len(texts):,} texts")

    base_words, _ = langdetect_baseline(word_texts)
    baseline = {
        "accuracy": accuracy(base_pred, gold), "accuracy_short": accuracy(base_pred, gold, short),
        "per_lang": {lang: accuracy(base_pred, gold, gold == lang) for lang in langs},
        "per_lang_short": {lang: accuracy(base_pred, gold, short & (gold == lang)) for lang in langs},
        "docs_per_s": len(texts) / seconds[BASELINE], "words_accuracy_raw": accuracy(base_words, word_gold),
    }

    # the default backend's abstention trade-off on single words (almost all under short_chars
    # letters, so short_min_score is their bound)
    sweep = []
    for min_chars in SWEEP_CHARS:
        for bound in SWEEP_SCORES:
            st = stage(DEFAULT, min_chars=min_chars, min_score=min(bound, 0.5), short_min_score=bound)
            decided, _, _ = run_stage(st, word_texts)
            ok = decided != "und"
            sweep.append({"min_chars": min_chars, "short_min_score": bound, "abstained": float(1 - ok.mean()),
                          "accuracy_answered": accuracy(decided, word_gold, ok)})

    names = BACKENDS + [BASELINE]
    table = {**results, BASELINE: baseline}
    pct = lambda v: f"{100 * v:5.1f}"  # noqa: E731
    print("\nTop-guess accuracy per language, all texts (%)")
    print(f"{'backend':<30}" + "".join(f"{lang:>7}" for lang in langs) + f"{'all':>7}")
    for name in names:
        r = table[name]
        print(f"{name:<30}" + "".join(f"{pct(r['per_lang'][lang]):>7}" for lang in langs) + f"{pct(r['accuracy']):>7}")
    print(f"\nTop-guess accuracy per language, texts under {SHORT} characters (%)")
    print(f"{'backend':<30}" + "".join(f"{lang:>7}" for lang in langs) + f"{'all':>7}")
    for name in names:
        r = table[name]
        print(f"{name:<30}" + "".join(f"{pct(r['per_lang_short'][lang]):>7}" for lang in langs)
              + f"{pct(r['accuracy_short']):>7}")
    base_speed = baseline["docs_per_s"]
    print(f"\nSpeed and abstention at the stage's defaults (min_chars={LanguageConfig().min_chars}, "
          f"min_score={LanguageConfig().min_score})")
    print(f"{'backend':<30}{'docs/s':>10}{'x langdetect':>14}{'und %':>8}{'acc. answered %':>17}"
          f"{'und % <50':>11}{'acc. ans. <50 %':>17}")
    for name in names:
        r = table[name]
        extra = (f"{pct(r['abstained']):>8}{pct(r['accuracy_answered']):>17}{pct(r['abstained_short']):>11}"
                 f"{pct(r['accuracy_answered_short']):>17}") if name in results else f"{'-':>8}{'-':>17}{'-':>11}{'-':>17}"
        print(f"{name:<30}{r['docs_per_s']:>10,.0f}{r['docs_per_s'] / base_speed:>13.1f}x" + extra)
    print(f"\nSingle words ({len(words):,}, one per text), stage defaults")
    print(f"{'backend':<30}{'acc. no abstention %':>22}{'abstained %':>13}{'acc. answered %':>17}{'answered':>10}")
    for name in names:
        r = table[name]
        extra = (f"{pct(r['words_abstained']):>13}{pct(r['words_accuracy_answered']):>17}{r['words_answered']:>10}"
                 if name in results else f"{'-':>13}{'-':>17}{'-':>10}")
        print(f"{name:<30}{pct(r['words_accuracy_raw']):>22}" + extra)
    print(f"\nSingle words, {DEFAULT}: abstained % / accuracy of the answered %")
    print(f"{'min_chars':<11}" + "".join(f"{'short_min_score ' + str(s):>22}" for s in SWEEP_SCORES))
    for min_chars in SWEEP_CHARS:
        cells = [s for s in sweep if s["min_chars"] == min_chars]
        print(f"{min_chars:<11}" + "".join(f"{pct(c['abstained']):>13} / {pct(c['accuracy_answered'])}" for c in cells))

    best_other = max(results[b]["accuracy"] for b in BACKENDS if b != DEFAULT)
    checks = {
        "default_most_accurate": results[DEFAULT]["accuracy"] >= best_other,
        "default_speed_vs_langdetect": results[DEFAULT]["docs_per_s"] / base_speed,
        "default_words_accuracy_answered": results[DEFAULT]["words_accuracy_answered"],
    }
    print(f"\ndefault backend {DEFAULT}: most accurate: {checks['default_most_accurate']}; "
          f"{checks['default_speed_vs_langdetect']:.1f}x langdetect's docs/s (target >= 25x); "
          f"single words answered right: {pct(checks['default_words_accuracy_answered'])} % (target >= 90 %)")
    save_result("language", {
        "texts": len(texts), "short_texts": int(short.sum()), "words": len(words), "per_lang": per_lang,
        "quick": args.quick, "default_backend": DEFAULT, "backends": results, "baseline_langdetect": baseline,
        "words_sweep": sweep, "checks": checks,
    })


if __name__ == "__main__":
    main()
