"""Language identification on real labelled multilingual text: whole sentences from Debian's
translated man pages (21 languages, ``bench/lang_sentences.py``), Debian's fortunes (cs, de, en,
es, it, pl, pt, ru; the label is the package's language) and single words taken from the fortunes.

In the same process, on the same texts:

* speed (``--part speed``): the stage with its default backend (fastText, batched) against raw
  fastText on the same texts: the binding's batch call ``multilinePredict`` (labels only: the
  fasttext-predict binding returns no probabilities from it, and its ``model.predict(list)``
  fails on that) and ``model.predict(text)`` per text (the public call, label and probability).
  They take turns on each chunk of texts, so load from other processes hits all alike. The other
  backends and ``langdetect.detect`` (the baseline most pipelines call) are timed on a sample;
* accuracy (``--part accuracy``): per language, for every backend at the stage's defaults (an
  abstention, ``und``, counts as wrong) and always answering (top guess), for raw fastText and
  for ``langdetect.detect``; abstention rates; single words; and the sweeps behind the abstention
  defaults (long_min_score x long_chars on sentences and fortunes, short_min_score x min_chars on
  single words).

    python bench/bench_language.py [--quick] [--part speed|accuracy|all] [--per-lang N] [--words N]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from bench.common import RESULTS_DIR, fortunes, save_result  # noqa: E402
from bench.lang_sentences import MIN_CHARS, sentences  # noqa: E402
from corpusmill.dataprep.language import Language, LanguageConfig  # noqa: E402
from corpusmill.dataprep.language_backends import UND, fasttext_model  # noqa: E402
from corpusmill.stage import BatchInfo, RunInfo  # noqa: E402

BACKENDS = ["fasttext", "py3langid", "langdetect"]
DEFAULTS = LanguageConfig()
DEFAULT = DEFAULTS.backend
CHUNK = 2000  # texts per turn in the interleaved timing of fastText
SLOW_SAMPLE = 1000  # texts the slower backends and the baseline are timed on
BASELINE = "langdetect.detect (baseline)"
RAW_FT = "raw fastText"
SHORT = 50
WORD = re.compile(r"[^\W\d_]+")
SWEEP_CHARS = (1, 4, 8)
SWEEP_SCORES = (0.5, 0.7, 0.8, 0.9, 0.95)
LONG_SWEEP = [(30, b) for b in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)] + [(40, 0.2), (60, 0.2)]
#: the targets of issue #22 for the default backend
TARGET_SPEED, TARGET_UND, TARGET_WORDS = 0.8, 0.005, 0.9


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


def raw_stage(backend: str) -> Language:
    """The backend asked about every text with a letter, no bound: its top guess."""
    return stage(backend, min_chars=0, min_score=0.0, short_chars=0)


def timed_process(st: Language, texts: list[str]) -> tuple[np.ndarray, float]:
    """lang of the stage's process() over one batch, and its seconds."""
    batch = pa.table({"id": [str(i) for i in range(len(texts))], "text": texts})
    t0 = time.perf_counter()
    out = st.process(batch, BatchInfo(0, 0))
    seconds = time.perf_counter() - t0
    return np.array(out.kept.column("lang").to_pylist(), dtype=object), seconds


def scores_of(backend: str, texts: list[str]) -> dict[str, np.ndarray]:
    """Top guess, its score and the letters of every text (the stage's preparation), in batches."""
    st = raw_stage(backend)
    parts = defaultdict(list)
    for start in range(0, len(texts), 8192):
        _, score, guess, letters = st.detect(pa.array(texts[start:start + 8192], pa.string()))
        parts["guess"].append(guess)
        parts["score"].append(score)
        parts["letters"].append(letters)
    return {k: np.concatenate(v) for k, v in parts.items()}


def decide(found: dict[str, np.ndarray], **options) -> np.ndarray:
    """What the stage with these options answers, from the raw guesses: the stage's own rule
    (min_chars, then the score bound of ``Language.required_score``)."""
    st = stage(DEFAULT, **options)
    lang = found["guess"].copy()
    asked = found["letters"] >= max(st.config.min_chars, 1)
    lang[~asked | (found["score"] < st.required_score(found["letters"]))] = UND
    return lang


def raw_fasttext(texts: list[str]) -> np.ndarray:
    """fastText's own answer: ``model.predict(text, k=1)`` on each text as it is (newlines made
    spaces, which fastText requires), no lower-casing, no bound."""
    model = fasttext_model()
    return np.array([model.predict(t.replace("\n", " "), k=1)[0][0][9:] for t in texts], dtype=object)


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


def pct(v: float) -> str:
    return f"{100 * v:5.1f}"


# ----------------------------------------------------------------------------- speed


def speed(sets: dict[str, list[str]], rounds: int) -> dict:
    """docs/s of the default stage and of raw fastText, in turns on chunks of each set; then the
    other backends and the baseline on a sample of the sentences."""
    model = fasttext_model()
    ft = stage(DEFAULT)
    try:
        model.predict(["a list of texts"], k=1)
        list_call = "works"
    except ValueError as e:  # fasttext-predict's multilinePredict returns labels without probabilities
        list_call = f"fails in this binding ({e})"
    out: dict = {"fasttext_predict_list": list_call, "sets": {}}
    for name, texts in sets.items():
        rng = random.Random(0)
        texts = rng.sample(texts, len(texts))  # chunks mix the languages
        lines = [t.replace("\n", " ") for t in texts]
        timed_process(ft, texts[:200])  # the model is loaded outside the timing
        seconds = {"stage": 0.0, "batch": 0.0, "per_text": 0.0}
        for _ in range(rounds):
            for start in range(0, len(texts), CHUNK):
                chunk, chunk_lines = texts[start:start + CHUNK], lines[start:start + CHUNK]
                seconds["stage"] += timed_process(ft, chunk)[1]
                t0 = time.perf_counter()
                model.f.multilinePredict([t + "\n" for t in chunk_lines], 1, 0.0, "strict")
                seconds["batch"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                for t in chunk_lines:
                    model.predict(t, k=1)
                seconds["per_text"] += time.perf_counter() - t0
        n = len(texts) * rounds
        docs = {k: n / v for k, v in seconds.items()}
        out["sets"][name] = {"texts": len(texts), "rounds": rounds, "docs_per_s": docs,
                             "stage_vs_batch": docs["stage"] / docs["batch"],
                             "stage_vs_per_text": docs["stage"] / docs["per_text"]}
    # the slower backends and the baseline, on a sample, in turns with the default stage
    texts = random.Random(1).sample(sets["sentences"], min(SLOW_SAMPLE, len(sets["sentences"])))
    for b in BACKENDS:
        timed_process(stage(b), texts[:20])
    langdetect_baseline(texts[:5])
    slow = {b: 0.0 for b in BACKENDS} | {BASELINE: 0.0}
    for start in range(0, len(texts), 250):
        chunk = texts[start:start + 250]
        for b in BACKENDS:
            slow[b] += timed_process(stage(b), chunk)[1]
        slow[BASELINE] += langdetect_baseline(chunk)[1]
    out["backends_docs_per_s"] = {k: len(texts) / v for k, v in slow.items()}
    out["backends_sample"] = len(texts)
    return out


def print_speed(sp: dict) -> None:
    print(f"\nSpeed: the stage ({DEFAULT}, defaults, process() with its preparation) against raw fastText "
          f"on the same texts; model.predict(list) {sp['fasttext_predict_list']}")
    print(f"{'texts':<26}{'stage docs/s':>14}{'batch call':>13}{'per text':>11}{'stage / batch':>15}"
          f"{'stage / per text':>18}")
    for name, s in sp["sets"].items():
        d = s["docs_per_s"]
        print(f"{name + ' (' + format(s['texts'], ',') + ')':<26}{d['stage']:>14,.0f}{d['batch']:>13,.0f}"
              f"{d['per_text']:>11,.0f}{s['stage_vs_batch']:>14.2f}x{s['stage_vs_per_text']:>17.2f}x")
    base = sp["backends_docs_per_s"][BASELINE]
    print(f"\nEvery backend at its defaults on {sp['backends_sample']:,} sentences, in turns")
    print(f"{'backend':<30}{'docs/s':>10}{'x langdetect':>14}")
    for name, v in sp["backends_docs_per_s"].items():
        print(f"{name:<30}{v:>10,.0f}{v / base:>13.1f}x")


# ----------------------------------------------------------------------------- accuracy


def accuracy_part(sent_rows: list[dict], fortune_rows: list[dict], words: list[tuple[str, str]],
                  sentence_words: list[tuple[str, str]]) -> dict:
    sets = {
        "sentences": ([r["text"] for r in sent_rows], [r["lang"] for r in sent_rows]),
        "fortunes": ([r["text"] for r in fortune_rows], [r["lang"] for r in fortune_rows]),
        "words": ([w for w, _ in words], [g for _, g in words]),
        "sentence_words": ([w for w, _ in sentence_words], [g for _, g in sentence_words]),
    }
    out: dict = {}
    raw_found: dict = {}
    for name, (texts, gold_list) in sets.items():
        gold = np.array(gold_list, dtype=object)
        long = np.array([len(t) >= MIN_CHARS for t in texts])
        short = np.array([len(t) < SHORT for t in texts])
        preds: dict[str, np.ndarray] = {}
        found = {b: scores_of(b, texts) for b in BACKENDS}
        raw_found[name] = found
        for b in BACKENDS:
            preds[f"{b} (top guess)"] = np.where(found[b]["letters"] > 0, found[b]["guess"], UND)
            preds[b] = decide(found[b], **{k: getattr(DEFAULTS, k) for k in (
                "min_chars", "min_score", "short_chars", "short_min_score", "long_chars", "long_min_score")})
        if name == "sentences":  # the derived decisions are the stage's own: checked on the default backend
            real, _ = timed_process(stage(DEFAULT), texts)
            assert (real == preds[DEFAULT]).all(), "decide() no longer mirrors the stage's rule"
        preds[RAW_FT] = raw_fasttext(texts)
        preds[BASELINE] = langdetect_baseline(texts)[0]
        langs = sorted(set(gold_list))
        table = {}
        for who, pred in preds.items():
            answered = pred != UND
            table[who] = {
                "accuracy": accuracy(pred, gold), "abstained": float(1 - answered.mean()),
                "precision": accuracy(pred, gold, answered),
                "accuracy_long": accuracy(pred, gold, long), "abstained_long": float(1 - answered[long].mean()) if long.any() else float("nan"),
                "accuracy_short": accuracy(pred, gold, short), "abstained_short": float(1 - answered[short].mean()) if short.any() else float("nan"),
                "precision_short": accuracy(pred, gold, answered & short), "answered": int(answered.sum()),
                "per_lang": {lang: accuracy(pred, gold, gold == lang) for lang in langs},
                "per_lang_abstained": {lang: float(1 - answered[gold == lang].mean()) for lang in langs},
            }
        out[name] = {"texts": len(texts), "long_texts": int(long.sum()), "short_texts": int(short.sum()),
                     "langs": langs, "table": table}
    # the sweeps behind the defaults, from the default backend's raw guesses
    long_sweep = []
    for long_chars, bound in LONG_SWEEP:
        cell = {"long_chars": long_chars, "long_min_score": bound}
        for name in ("sentences", "fortunes"):
            texts, gold_list = sets[name]
            gold = np.array(gold_list, dtype=object)
            long = np.array([len(t) >= MIN_CHARS for t in texts])
            pred = decide(raw_found[name][DEFAULT], long_chars=long_chars, long_min_score=bound, min_score=0.5)
            ok = pred != UND
            cell[name] = {"abstained_long": float(1 - ok[long].mean()), "accuracy_long": accuracy(pred, gold, long),
                          "precision_long": accuracy(pred, gold, ok & long), "abstained": float(1 - ok.mean()),
                          "accuracy": accuracy(pred, gold), "precision": accuracy(pred, gold, ok)}
        long_sweep.append(cell)
    word_sweep = []
    word_gold = np.array(sets["words"][1], dtype=object)
    for min_chars in SWEEP_CHARS:
        for bound in SWEEP_SCORES:
            pred = decide(raw_found["words"][DEFAULT], min_chars=min_chars, min_score=min(bound, 0.5),
                          short_min_score=bound)
            ok = pred != UND
            word_sweep.append({"min_chars": min_chars, "short_min_score": bound, "abstained": float(1 - ok.mean()),
                               "accuracy_answered": accuracy(pred, word_gold, ok)})
    out["long_sweep"], out["words_sweep"] = long_sweep, word_sweep
    return out


def print_accuracy(acc: dict) -> None:
    stage_rows = BACKENDS + [f"{b} (top guess)" for b in BACKENDS]
    order = [BACKENDS[0], f"{BACKENDS[0]} (top guess)", RAW_FT, "py3langid", "py3langid (top guess)",
             "langdetect", "langdetect (top guess)", BASELINE]
    for name, title in (("sentences", f"man-page sentences (>= {MIN_CHARS} characters)"), ("fortunes", "fortunes")):
        a = acc[name]
        langs = a["langs"]
        print(f"\nAccuracy per language, {title}, {a['texts']:,} texts; stage rows at the defaults count und "
              f"as wrong (%)")
        print(f"{'':<30}" + "".join(f"{lang:>6}" for lang in langs) + f"{'all':>7}{'und':>6}")
        for who in order:
            r = a["table"][who]
            und = pct(r["abstained"]) if who in stage_rows or who == BASELINE else "    -"
            print(f"{who:<30}" + "".join(f"{pct(r['per_lang'][lang]):>6}" for lang in langs)
                  + f"{pct(r['accuracy']):>7}{und:>6}")
    f = acc["fortunes"]
    print(f"\nFortunes under {SHORT} characters ({f['short_texts']:,}): accuracy / und / accuracy of the answered (%)")
    for who in order:
        r = f["table"][who]
        print(f"{who:<30}{pct(r['accuracy_short'])} / {pct(r['abstained_short'])} / {pct(r['precision_short'])}")
    for name, title in (("words", "single words from the fortunes"), ("sentence_words", "single words from the sentences")):
        w = acc[name]
        print(f"\n{title.capitalize()} ({w['texts']:,}), stage defaults")
        print(f"{'backend':<30}{'top guess %':>13}{'abstained %':>13}{'acc. answered %':>17}{'answered':>10}")
        for b in BACKENDS:
            r, top = w["table"][b], w["table"][f"{b} (top guess)"]
            print(f"{b:<30}{pct(top['accuracy']):>13}{pct(r['abstained']):>13}{pct(r['precision']):>17}{r['answered']:>10}")
        print(f"{BASELINE:<30}{pct(w['table'][BASELINE]['accuracy']):>13}")
    print(f"\nLong text, {DEFAULT} (short_chars {DEFAULTS.short_chars}, min_score 0.5): texts >= {MIN_CHARS} characters, "
          f"und % / accuracy (und wrong) % / accuracy of the answered %")
    print(f"{'long_chars':<12}{'long_min_score':<16}{'sentences':>26}{'fortunes':>26}{'all fortunes':>26}")
    for c in acc["long_sweep"]:
        s, fo = c["sentences"], c["fortunes"]
        print(f"{c['long_chars']:<12}{c['long_min_score']:<16}"
              f"{pct(s['abstained_long'])} /{pct(s['accuracy_long'])} /{pct(s['precision_long']):>6}"
              f"{pct(fo['abstained_long']):>8} /{pct(fo['accuracy_long'])} /{pct(fo['precision_long'])}"
              f"{pct(fo['abstained']):>8} /{pct(fo['accuracy'])} /{pct(fo['precision'])}")
    print(f"\nSingle words, {DEFAULT}: abstained % / accuracy of the answered %")
    print(f"{'min_chars':<11}" + "".join(f"{'short_min_score ' + str(s):>22}" for s in SWEEP_SCORES))
    for min_chars in SWEEP_CHARS:
        cells = [s for s in acc["words_sweep"] if s["min_chars"] == min_chars]
        print(f"{min_chars:<11}" + "".join(f"{pct(c['abstained']):>13} / {pct(c['accuracy_answered'])}" for c in cells))


def checks_of(result: dict) -> dict:
    checks = {}
    if "speed" in result:
        s = result["speed"]["sets"]["sentences"]
        checks["stage_vs_raw_batch"] = round(s["stage_vs_batch"], 3)
        checks["stage_vs_raw_per_text"] = round(s["stage_vs_per_text"], 3)
        checks["speed_met"] = s["stage_vs_batch"] >= TARGET_SPEED
    if "accuracy" in result:
        t = result["accuracy"]["sentences"]["table"]
        checks["sentences_und"] = t[DEFAULT]["abstained_long"]
        checks["sentences_accuracy"] = t[DEFAULT]["accuracy_long"]
        checks["sentences_accuracy_langdetect"] = t[BASELINE]["accuracy_long"]
        checks["sentences_accuracy_langdetect_stage"] = t["langdetect"]["accuracy_long"]
        checks["words_precision"] = result["accuracy"]["words"]["table"][DEFAULT]["precision"]
        checks["und_met"] = checks["sentences_und"] <= TARGET_UND
        checks["accuracy_met"] = checks["sentences_accuracy"] >= max(checks["sentences_accuracy_langdetect"],
                                                                     checks["sentences_accuracy_langdetect_stage"])
        checks["words_met"] = checks["words_precision"] >= TARGET_WORDS
    return checks


def print_checks(checks: dict) -> None:
    print(f"\ndefault backend {DEFAULT}:")
    if "stage_vs_raw_batch" in checks:
        print(f"  stage / raw fastText docs/s on the sentences: {checks['stage_vs_raw_batch']:.2f}x the batch call, "
              f"{checks['stage_vs_raw_per_text']:.2f}x predict per text (target >= {TARGET_SPEED}x): "
              f"{'met' if checks['speed_met'] else 'MISSED'}")
    if "sentences_und" in checks:
        print(f"  sentences >= {MIN_CHARS} characters: und {100 * checks['sentences_und']:.2f}% (target <= "
              f"{100 * TARGET_UND:.1f}%): {'met' if checks['und_met'] else 'MISSED'}; accuracy (und wrong) "
              f"{100 * checks['sentences_accuracy']:.2f}% vs langdetect.detect {100 * checks['sentences_accuracy_langdetect']:.2f}%"
              f", langdetect stage {100 * checks['sentences_accuracy_langdetect_stage']:.2f}%: "
              f"{'met' if checks['accuracy_met'] else 'MISSED'}")
        print(f"  single words answered right: {100 * checks['words_precision']:.1f}% (target >= "
              f"{100 * TARGET_WORDS:.0f}%): {'met' if checks['words_met'] else 'MISSED'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="300 fortunes and 200 sentences per language, 1000 words")
    ap.add_argument("--part", choices=["speed", "accuracy", "all"], default="all",
                    help="speed: the timed turns only (short: run it on an idle machine); accuracy: the tables")
    ap.add_argument("--per-lang", type=int, default=2500, help="fortunes per language (pt has 2,506)")
    ap.add_argument("--words", type=int, default=5000, help="single words to test")
    ap.add_argument("--rounds", type=int, default=3, help="passes over the texts in the speed turns")
    args = ap.parse_args()
    per_lang, n_words = (300, 1000) if args.quick else (args.per_lang, args.words)

    sent_rows = sentences()
    if args.quick:
        sent_rows = sample(sent_rows, 200)
    fortune_rows = sample(fortunes(), per_lang)
    words = single_words(fortune_rows, n_words)
    sentence_words = single_words(sent_rows, n_words)
    print(f"{len(sent_rows):,} man-page sentences in {len({r['lang'] for r in sent_rows})} languages; "
          f"{len(fortune_rows):,} fortunes in {len({r['lang'] for r in fortune_rows})}; {len(words):,} single words "
          f"from the fortunes, {len(sentence_words):,} from the sentences")

    result: dict = {"sentences": len(sent_rows), "fortunes": len(fortune_rows), "words": len(words),
                    "quick": args.quick, "default_backend": DEFAULT,
                    "defaults": DEFAULTS.model_dump(include={"min_chars", "min_score", "short_chars",
                                                             "short_min_score", "long_chars", "long_min_score"})}
    if args.part in ("speed", "all"):
        result["speed"] = speed({"sentences": [r["text"] for r in sent_rows],
                                 "fortunes": [r["text"] for r in fortune_rows]}, args.rounds)
        print_speed(result["speed"])
    if args.part in ("accuracy", "all"):
        result["accuracy"] = accuracy_part(sent_rows, fortune_rows, words, sentence_words)
        print_accuracy(result["accuracy"])
    if args.part != "all":  # the other part of an earlier run stays in the result file
        previous = RESULTS_DIR / "language.json"
        if previous.is_file():
            old = json.loads(previous.read_text())
            other = "accuracy" if args.part == "speed" else "speed"
            if other in old and old.get("quick") == args.quick:
                result[other] = old[other]
    result["checks"] = checks_of(result)
    print_checks(result["checks"])
    save_result("language", result)


if __name__ == "__main__":
    main()
