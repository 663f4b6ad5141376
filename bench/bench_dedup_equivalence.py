"""Which ``near`` settings reproduce other tools' MinHash defaults, with removal counts side by side.

The defaults, as read from each tool's source (datatrove 0.10.1 installed from the ``bench``
extra; text-dedup 0.4.0 and Data-Juicer (py-data-juicer) 1.6.1 read from their PyPI packages):

=============  ===================  =====  ======  ===========  ==========================
tool           shingles             slots  thresh  bands x rows  decision
=============  ===================  =====  ======  ===========  ==========================
datatrove      word 5-grams (1)     112    none    14 x 8        any shared band
text-dedup     word 5-grams (2)     250    0.7     25 x 10 (4)   any shared band
Data-Juicer    word 5-grams (3)     256    0.7     25 x 10 (4)   any shared band
corpusmill     word 3-grams (5)     128    0.8     16 x 8 (6)    Jaccard of the shingle sets
=============  ===================  =====  ======  ===========  ==========================

(1) ``MinhashConfig``: ``simplify_text`` (lower-case, punctuation removed, digits to 0,
diacritics folded) then spaCy's English word tokenizer; (2) ``minhash.py``: lower-cased, split
on ``\\W``; (3) ``document_minhash_deduplicator``: ``tokenization="space"`` (split on " " only:
punctuation and line breaks stay in the word), lower-cased, ``window_size=5``; (4) both call datasketch's
``optimal_param(threshold, num_perm)`` with weights 0.5/0.5; corpusmill picks the same layout
with ``fp_weight: 0.5, fn_weight: 0.5``; (5) lower-cased, punctuation separates words;
(6) weights 0.05/0.95.

None of the three checks a candidate pair: two documents that share one band are duplicates
(union-find over the buckets). corpusmill reproduces that with the tool's layout, ``verify:
false`` and a threshold below the smallest estimate a shared band gives (rows / num_perm), so
every candidate is accepted; the second corpusmill row per tool keeps the tool's shingles and
threshold and verifies every pair (what corpusmill does by default).

Each configuration runs ``corpusmill run`` (exact dedup off, so only the near step decides) on
the same corpus, from bench/dedup_corpus.py: base documents of ~400 bytes built from fortunes
used at most once (two base documents share no text) and 25 % planted copies with 0-20 %
word edits. datatrove runs its own four-step MinHash pipeline (needs ``pip install
'corpusmill[bench]'``). text-dedup and Data-Juicer run, with their default MinHash settings, in
interpreters of their own, since their pins clash with corpusmill's (text-dedup 0.4.0 needs
``datasets`` 2.x on numpy 1, Data-Juicer ``datasets`` 4.7 and ``fsspec`` 2026): pass
``--text-dedup-python`` / ``--data-juicer-python`` (or set ``CORPUSMILL_TEXT_DEDUP_PYTHON`` /
``CORPUSMILL_DATA_JUICER_PYTHON``), made as docs/dedup.md shows; by default the venvs
bench/bench_peers.py builds under bench/data/peer-envs/, when they are there. A small driver reads the corpus
in that interpreter, runs the tool and writes the ids it removed; the table puts its count next
to corpusmill at the tool's layout, with how many removed ids the two share and how many of its
removals fall in a family where corpusmill removes as many (agreement whichever row each keeps).

Scores, from the planted truth (a family: a base document and its copies):

* removed: rows removed;
* wrong: removals a family cannot explain (more rows removed from a family than it has
  copies), a lower bound on false removals;
* families merged: families with copies of which exactly one row is left.

    python bench/bench_dedup_equivalence.py [--docs 30000] \
        [--text-dedup-python /tmp/venv-textdedup/bin/python] [--data-juicer-python /tmp/venv-datajuicer/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml  # noqa: E402

from bench import dedup_corpus  # noqa: E402
from bench.common import DATA_DIR, save_result  # noqa: E402

#: (label, tool whose default it reproduces, near options)
CONFIGS = [
    ("corpusmill default", "-", {"threshold": 0.8}),
    ("corpusmill at datatrove's layout, every candidate", "datatrove",
     {"ngram": 5, "num_perm": 112, "bands": 14, "rows": 8, "verify": False, "threshold": 0.05}),
    ("corpusmill, 5-grams, threshold 0.72, verified", "datatrove", {"ngram": 5, "threshold": 0.72}),
    ("corpusmill at text-dedup's layout, every candidate", "text-dedup",
     {"ngram": 5, "num_perm": 250, "bands": 25, "rows": 10, "verify": False, "threshold": 0.03}),
    ("corpusmill at Data-Juicer's layout, every candidate", "Data-Juicer",
     {"ngram": 5, "num_perm": 256, "bands": 25, "rows": 10, "verify": False, "threshold": 0.03}),
    ("corpusmill, 5-grams, threshold 0.7, verified", "text-dedup, Data-Juicer",
     {"ngram": 5, "threshold": 0.7, "fp_weight": 0.5, "fn_weight": 0.5}),
    # a tool run with threshold 0.8: the same threshold on longer shingles is a stricter test
    ("corpusmill, 5-grams, threshold 0.8, verified", "a 5-gram tool at 0.8", {"ngram": 5, "threshold": 0.8}),
]


def score(docs, removed: set[str]) -> dict:
    size = Counter(d.family for d in docs)
    gone = Counter(d.family for d in docs if d.id in removed)
    wrong = sum(max(0, n - (size[f] - 1)) for f, n in gone.items())
    with_copies = [f for f, s in size.items() if s > 1]
    merged = sum(gone[f] == size[f] - 1 for f in with_copies)
    return {"removed": len(removed), "wrong": wrong, "families_merged": merged, "families_with_copies": len(with_copies)}


#: Drivers run in the tool's own interpreter: argv is the corpus (JSONL with ``id`` and ``text``), a
#: folder to work in and optionally a process count; each writes ``removed.json``: the tool's version,
#: LSH layout and removed ids. bench/bench_peers.py runs them too.
TEXT_DEDUP_DRIVER = """
import json, sys
from importlib.metadata import version
from datasets import load_dataset, load_from_disk
from text_dedup.minhash import main
from text_dedup.utils import optimal_param
data, work = sys.argv[1], sys.argv[2]
procs = ["--num_proc", sys.argv[3]] if len(sys.argv) > 3 else []  # default: os.cpu_count()
# minhash.py's defaults: --ngram 5 --num_perm 250 --threshold 0.7 --min_length 5 --hash_func sha1
main(["--path", "json", "--data_files", data, "--split", "train", "--cache_dir", work + "/cache",
      "--output", work + "/kept", "--column", "text", *procs], standalone_mode=False)
kept = set(load_from_disk(work + "/kept")["id"])
ids = load_dataset("json", data_files=data, split="train", cache_dir=work + "/cache")["id"]  # main's cache
b, r = optimal_param(0.7, 250, false_positive_weight=0.5, false_negative_weight=0.5)
json.dump({"version": version("text-dedup"), "layout": f"{b} x {r}",
           "removed": [i for i in ids if i not in kept]}, open(work + "/removed.json", "w"))
"""

DATA_JUICER_DRIVER = """
import json, sys
from importlib.metadata import version
from datasets import load_dataset
from data_juicer.ops.deduplicator.document_minhash_deduplicator import DocumentMinhashDeduplicator
data, work = sys.argv[1], sys.argv[2]
procs = int(sys.argv[3]) if len(sys.argv) > 3 else None  # Data-Juicer's np; default one process
ds = load_dataset("json", data_files=data, split="train", cache_dir=work + "/cache")
op = DocumentMinhashDeduplicator()  # defaults: space tokens, window 5, lower-cased, 256 perms, 0.7
# what Deduplicator.run does, less its free_models(), which would pull in torch
kept, _ = op.process(ds.map(op.compute_hash, num_proc=procs))
kept = set(kept["id"])
json.dump({"version": version("py-data-juicer"), "layout": f"{op.num_bands} x {op.num_rows_per_band}",
           "removed": [i for i in ds["id"] if i not in kept]}, open(work + "/removed.json", "w"))
"""

#: tool -> (flag, environment variable, driver, venv recipe). bench/bench_peers.py builds the same venvs
#: under bench/data/peer-envs/<tool in lower case>; when there, they are the default.
PEERS = {
    "text-dedup": ("--text-dedup-python", "CORPUSMILL_TEXT_DEDUP_PYTHON", TEXT_DEDUP_DRIVER,
                   "python3 -m venv /tmp/venv-textdedup && /tmp/venv-textdedup/bin/pip install --no-deps "
                   "-r bench/peers/text-dedup.txt (or run bench/bench_peers.py once)"),
    "Data-Juicer": ("--data-juicer-python", "CORPUSMILL_DATA_JUICER_PYTHON", DATA_JUICER_DRIVER,
                    "python3 -m venv /tmp/venv-datajuicer && /tmp/venv-datajuicer/bin/pip install --no-deps "
                    "-r bench/peers/data-juicer.txt (or run bench/bench_peers.py once)"),
}


def _peer_env_python(tool: str) -> str | None:
    """The python of the venv bench/bench_peers.py built for ``tool``, if it did."""
    python = DATA_DIR / "peer-envs" / tool.lower() / "bin" / "python"
    return str(python) if python.is_file() else None


def run_peer(tool: str, python: str, data: Path, workdir: Path) -> dict:
    """Run ``tool``'s driver in ``python``; its version, layout and removed ids. Raises RuntimeError
    with the driver's last lines when it fails (a missing dependency names itself there)."""
    work = workdir / tool
    work.mkdir()
    driver = work / "driver.py"
    driver.write_text(PEERS[tool][2])
    proc = subprocess.run([python, str(driver), str(data), str(work)], cwd=work, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise RuntimeError(f"{tool}'s driver failed in {python} (exit {proc.returncode}):\n{tail}")
    return json.loads((work / "removed.json").read_text())


def run_corpusmill(data: Path, workdir: Path, near: dict, k: int) -> tuple[set[str], dict]:
    """The ids the near step removed, and its LSH layout."""
    from corpusmill.pipelines import run_pipeline

    pipe = workdir / f"pipeline-{k}.yaml"
    pipe.write_text(yaml.safe_dump({
        "dataset": f"equiv{k}", "inputs": [{"path": str(data), "id_field": "id"}],
        "steps": [{"dedup": {"exact": False, "near": near}}],
    }))
    result = run_pipeline(pipe, store=workdir / "store", workers=2, quiet=True)
    rej = result.version.read_rejects()
    lsh = next(s for s in result.manifest["stages"] if s["name"] == "dedup")["counters"]["lsh"]
    return set(rej.column("id").to_pylist()) if rej is not None else set(), lsh


def run_datatrove(data: Path, workdir: Path) -> set[str]:
    """datatrove's MinHash pipeline with its defaults (MinhashConfig()), as its example runs it
    (bench/peers/datatrove_minhash.py, one task, here in corpusmill's environment)."""
    from bench.peers import datatrove_minhash

    _xxhash_takes_text()
    removed, _ = datatrove_minhash.run(data.parent, workdir / "datatrove", glob=data.name, tasks=1, workers=2)
    return set(removed)


def _xxhash_takes_text() -> None:
    """datatrove 0.10.1 passes str to xxhash, which the xxhash 4 this environment has refuses: encode it
    as UTF-8 first, as older xxhash did, so datatrove runs with its default hash unchanged."""
    import xxhash
    from datatrove.utils.hashes import xxhash as dt_xxhash

    dt_xxhash.xxhash32 = lambda data: xxhash.xxh32_intdigest(data.encode() if isinstance(data, str) else data)
    dt_xxhash.xxhash64 = lambda data: xxhash.xxh64_intdigest(data.encode() if isinstance(data, str) else data)


def _itself(label: str, tool: str, layout: str, docs, removed: set[str], layout_removed: dict) -> dict:
    """A row for a tool run itself: its scores and how its removals agree with corpusmill's at its
    layout: ``same_as_layout`` counts the removed ids both share; ``same_family_as_layout`` the
    removals both make in the same planted family, whichever member each keeps (text-dedup's
    union-by-rank often keeps a later row of a cluster, corpusmill and datatrove the first)."""
    ours = layout_removed.get(tool, set())
    family = {d.id: d.family for d in docs}
    theirs_by, ours_by = Counter(family[i] for i in removed), Counter(family[i] for i in ours)
    return {"method": label, "reproduces": tool, "near": None, "layout": layout, **score(docs, removed),
            "same_as_layout": len(removed & ours),
            "same_family_as_layout": sum(min(n, ours_by[f]) for f, n in theirs_by.items())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=30_000, help="documents in the corpus (default 30,000)")
    ap.add_argument("--no-datatrove", action="store_true", help="skip the datatrove run")
    for tool, (flag, env, _, _) in PEERS.items():
        ap.add_argument(flag, default=os.environ.get(env) or _peer_env_python(tool), metavar="PATH",
                        help=f"python of a venv with {tool} installed: run it on the corpus too (default ${env}, "
                             f"else bench/data/peer-envs/{tool.lower()} if bench_peers.py built it)")
    args = ap.parse_args()
    pythons = {tool: getattr(args, flag[2:].replace("-", "_")) for tool, (flag, *_) in PEERS.items()}
    docs = dedup_corpus.build(args.docs, copy_share=0.25, reuse=False, mean_bytes=400, seed=2)
    copies = sum(d.edit_rate >= 0 for d in docs)
    results = []
    layout_removed: dict[str, set[str]] = {}  # tool -> ids corpusmill removes at its layout, every candidate
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        data = tmp / "in" / "docs.jsonl"
        dedup_corpus.write_jsonl(docs, data)
        for k, (label, tool, near) in enumerate(CONFIGS):
            removed, lsh = run_corpusmill(data, tmp, near, k)
            results.append({"method": label, "reproduces": tool, "near": near,
                            "layout": f"{lsh['bands']} x {lsh['rows']}", **score(docs, removed)})
            if label.startswith("corpusmill at "):
                layout_removed[tool] = removed
            print(f"{label}: removed {len(removed):,}", file=sys.stderr)
        if not args.no_datatrove:
            try:
                removed = run_datatrove(data, tmp)
            except ImportError as err:
                print(f"datatrove not run ({err}): pip install 'corpusmill[bench]'", file=sys.stderr)
            else:
                results.append(_itself("datatrove 0.10.1 itself (MinhashConfig defaults)", "datatrove", "14 x 8",
                                       docs, removed, layout_removed))
        for tool, python in pythons.items():
            flag, env, _, recipe = PEERS[tool]
            if not python:
                print(f"{tool} not run: make a venv for it ({recipe}) and pass {flag} PATH or set {env}",
                      file=sys.stderr)
                continue
            try:
                out = run_peer(tool, python, data, tmp)
            except (OSError, RuntimeError) as err:
                print(f"{tool} not run: {err}\n  give {flag} the python of a venv made so: {recipe}", file=sys.stderr)
                continue
            removed = set(out["removed"])
            print(f"{tool} {out['version']} itself: removed {len(removed):,}", file=sys.stderr)
            results.append(_itself(f"{tool} {out['version']} itself (its defaults)", tool, out["layout"],
                                   docs, removed, layout_removed))
    # each tool's own row right after corpusmill at its layout
    for r in [r for r in results if r.get("same_as_layout") is not None]:
        results.remove(r)
        at = next(i for i, c in enumerate(results)
                  if c["method"].startswith("corpusmill at ") and c["reproduces"] == r["reproduces"])
        results.insert(at + 1, r)
    print(f"\n{len(docs):,} documents, {copies:,} planted copies (0-20 % word edits); exact dedup off\n")
    print(f"| {'method':52s} | {'reproduces':23s} | {'bands x rows':12s} | {'removed':>7s} | {'wrong':>5s} | "
          f"{'families merged':>15s} | {'agree with corpusmill at its layout: ids / families':>51s} |")
    print(f"|{'-' * 54}|{'-' * 25}|{'-' * 14}|{'-' * 9}|{'-' * 7}|{'-' * 17}|{'-' * 53}|")
    for r in results:
        same = "" if r.get("same_as_layout") is None else f"{r['same_as_layout']:,} / {r['same_family_as_layout']:,}"
        print(f"| {r['method']:52s} | {r['reproduces']:23s} | {r['layout']:12s} | {r['removed']:7,d} | {r['wrong']:5,d} | "
              f"{r['families_merged']:7,d} of {r['families_with_copies']:,} | {same:>51s} |")
    save_result("dedup_equivalence", {"documents": len(docs), "planted_copies": copies, "results": results})


if __name__ == "__main__":
    main()
