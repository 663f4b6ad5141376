"""corpusmill next to the deduplicators users choose between: datatrove, text-dedup and
Data-Juicer, on the same corpus with known near-duplicate families, one after another.

The corpus is bench/bench_dedup_run.py's (built once under bench/data/): documents of ~500 bytes
joined from passages of Debian's fortunes, 10 % of them planted copies of a base document with
0-20 % of their words edited (a tenth of the copies unedited), each text's whitespace made single
spaces (see ``corpus``). A *family* is a base document and its copies.

What runs, each as a process tree of its own, on 2 workers where the tool has a count:

* corpusmill: ``corpusmill run`` with ``dedup: {exact: true, near: true}`` (word 3-grams,
  threshold 0.8, every candidate pair verified), ``--workers 2``, as bench_dedup_run.py runs it;
* datatrove: its four documented MinHash steps (signatures, buckets, clusters, filter) on the
  local executor, ``tasks=2, workers=2`` (bench/peers/datatrove_minhash.py), once with
  ``MinhashConfig()``'s defaults (word 5-grams, 14 bands x 8 rows, no threshold: any shared
  band joins two documents) and once tuned to corpusmill's threshold: word 3-grams and the
  layout datasketch's ``optimal_param(0.8, 128)`` picks at equal weights (9 x 13, the rule
  text-dedup and Data-Juicer use for their own 0.7), since datatrove has no verification step;
* text-dedup 0.4.0: ``text_dedup.minhash`` with its defaults (5-grams, 250 permutations, 0.7,
  25 x 10), ``--num_proc 2``;
* Data-Juicer 1.6.1: ``document_minhash_deduplicator`` with its defaults (space tokens, window
  5, 256 permutations, 0.7, 25 x 10), its hashes mapped with ``num_proc=2``.

The three peers run in environments of their own, made by this script the first time under
bench/data/peer-envs/<tool> (``python -m venv`` and ``pip install --no-deps`` of the exact pins
in bench/peers/<tool>.txt), so their dependencies never meet corpusmill's (text-dedup needs
numpy 1 and ``datasets`` 2.x, Data-Juicer ``datasets`` 5). A peer whose environment cannot be
built (no network, a pip failure) is skipped with a one-line message; the others still run.
text-dedup and Data-Juicer run through the drivers of bench/bench_dedup_equivalence.py.

Every tool reads the same JSONL file, datatrove the same lines cut into two files (it gives each
task whole files); the cut is made before the clock starts. Measured per tool, for the whole
process tree (bench/common.py ``TreeMonitor``, psutil samples every 50 ms): wall seconds from
start to exit, CPU seconds (user + system) of every process, and the peak of their summed RSS
(the benchmark's own small process, ~40 MB, included, as in bench_dedup_run.py); and, sampled
every 0.2 s, the peak PSS of the tool's tree, which counts a page that forked workers share once
(summed RSS counts it in every worker: text-dedup and Data-Juicer fork theirs from a process
that holds their hash tables). The time is the tool's start-up,
reading the corpus and writing its result: corpusmill writes a whole version (kept rows,
rejects with reasons, report), a peer's driver writes the ids it removed.

Scores, from the planted families (as bench_dedup_equivalence.py's ``score``):

* removed: rows the tool removed (corpusmill: exact and near duplicates);
* correct removals: per family, the rows removed up to its copies (a family of a base and k
  copies can lose k rows, whichever member the tool keeps); what a family cannot explain is
  wrong (so precision is an upper bound: a wrong pair inside a family's allowance is not seen);
* precision = correct removals / removed (1.0 when nothing is removed);
* recall = correct removals / planted copies. Copies with many edits are not near duplicates
  at any tool's threshold, so no tool reaches 1.0 here; the recall of different thresholds is
  comparable only with that in mind.

    python bench/bench_peers.py [--docs 100000 [1000000]] [--peers datatrove,text-dedup,data-juicer]
                                [--skip-peers] [--datatrove both|default|tuned] [--timeout SECONDS] [--max-mb MB]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
import yaml  # noqa: E402

from bench import bench_dedup_equivalence as equivalence  # noqa: E402
from bench import bench_dedup_run, dedup_corpus  # noqa: E402
from bench.common import DATA_DIR, TreeMonitor, save_result  # noqa: E402

PEERS_DIR = Path(__file__).resolve().parent / "peers"
ENV_DIR = DATA_DIR / "peer-envs"
WORKERS = 2

#: environment -> what must import in it for the environment to count as built
ENV_CHECKS = {
    "datatrove": "import datatrove.pipeline.dedup.minhash, datatrove.utils.word_tokenizers",
    "text-dedup": "import text_dedup.minhash",
    "data-juicer": "import data_juicer.ops.deduplicator.document_minhash_deduplicator",
}

#: environment -> the tool's name in bench_dedup_equivalence.PEERS, whose driver runs it
EQUIVALENCE_NAMES = {"text-dedup": "text-dedup", "data-juicer": "Data-Juicer"}


@dataclass
class Run:
    key: str
    label: str
    env: str | None  # the peer environment; None: corpusmill in this one
    args: list[str] = field(default_factory=list)  # the driver's options


RUNS = [
    Run("corpusmill", "corpusmill, exact + near (defaults: 3-grams, 0.8, verified)", None),
    Run("datatrove", "datatrove, defaults (5-grams)", "datatrove", ["--tasks", "2", "--workers", "2"]),
    Run("datatrove-tuned", "datatrove, tuned to 0.8 (3-grams)", "datatrove",
        ["--tasks", "2", "--workers", "2", "--ngram", "3", "--bands", "9", "--rows", "13"]),
    Run("text-dedup", "text-dedup, defaults (5-grams, 0.7)", "text-dedup", [str(WORKERS)]),
    Run("data-juicer", "Data-Juicer, defaults (5-grams, 0.7)", "data-juicer", [str(WORKERS)]),
]


def ensure_env(name: str, env_dir: Path = ENV_DIR, pins_dir: Path = PEERS_DIR) -> Path | None:
    """The python of ``name``'s environment, built once from its pins (rebuilt when they change);
    None, with a one-line message, when it cannot be built."""
    pins = pins_dir / f"{name}.txt"
    where = env_dir / name
    python = where / "bin" / "python"
    try:
        digest = hashlib.sha256(pins.read_bytes()).hexdigest()
    except OSError as err:
        print(f"{name} skipped: no pins ({err})", file=sys.stderr)
        return None
    marker = where / "corpusmill-pins.sha256"
    if python.is_file() and marker.is_file() and marker.read_text() == digest:
        return python
    shutil.rmtree(where, ignore_errors=True)
    print(f"building {name}'s environment in {where} (pip install --no-deps -r {pins}) ...", file=sys.stderr)
    steps = [[sys.executable, "-m", "venv", str(where)],
             [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
              "-r", str(pins)],
             [str(python), "-c", ENV_CHECKS[name]]]
    for cmd in steps:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=_clean_env())
        except (OSError, subprocess.TimeoutExpired) as err:
            print(f"{name} skipped: could not build its environment ({err})", file=sys.stderr)
            return None
        if done.returncode:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit {done.returncode}"]
            print(f"{name} skipped: could not build its environment ({' '.join(cmd[1:4])}...: {last[0]})",
                  file=sys.stderr)
            return None
    marker.write_text(digest)
    return python


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without what would point a peer's python at corpusmill's packages."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return {**env, **extra}


def measure(cmd: list[str], *, log: Path, timeout: float | None = None, max_mb: float | None = None,
            env: dict[str, str] | None = None, cwd: Path | None = None) -> dict:
    """Run ``cmd`` as its own process group: wall and CPU seconds and peak RSS of the tree (this
    process included, as bench_dedup_run.py measures), and the peak PSS of the command's own tree
    (a page shared by forked workers counted once). Past ``timeout`` seconds or ``max_mb`` of PSS
    the group is killed (``stopped``: why); a non-zero exit is ``failed``, with the log's tail."""
    import psutil

    stopped = None
    peak_pss = 0
    with TreeMonitor() as mon, open(log, "wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                start_new_session=True)
        top = psutil.Process(proc.pid)
        while True:
            try:
                rc = proc.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                pass
            pss = 0
            try:
                tree = [top, *top.children(recursive=True)]
            except psutil.Error:
                tree = []
            for p in tree:
                try:
                    pss += p.memory_full_info().pss
                except psutil.Error:
                    pass
            peak_pss = max(peak_pss, pss)
            if timeout is not None and time.perf_counter() - t0 > timeout:
                stopped = f"> {timeout:.0f} s"
            elif max_mb is not None and pss > max_mb * 2**20:
                stopped = f"> {max_mb:,.0f} MB"
            if stopped:
                os.killpg(proc.pid, signal.SIGKILL)
                rc = proc.wait()
                break
        seconds = time.perf_counter() - t0
    result = {"seconds": round(seconds, 2), "cpu_seconds": round(mon.child_cpu_seconds, 1),
              "peak_rss_mb": mon.peak_mb, "peak_pss_mb": round(peak_pss / 2**20, 1)}
    if stopped:
        result["stopped"] = stopped
    elif rc:
        result["failed"] = "\n".join(log.read_text(errors="replace").strip().splitlines()[-5:])
    return result


def corpus(n: int) -> tuple[Path, int]:
    """bench_dedup_run.py's corpus of ``n`` documents with every run of whitespace in a text made one
    space (written once under bench/data/), and its bytes of text.

    The base documents join passages with line breaks and a planted copy is re-joined with spaces,
    so without this an unedited copy would differ from its base in whitespace alone. Every tool
    here splits words on any whitespace except Data-Juicer, whose default ``tokenization: space``
    keeps a line break inside a word: it would find almost no copy (docs/dedup.md, *Coming from
    another tool*). With one space everywhere, the tools differ in how they decide, not in that."""
    src, _ = bench_dedup_run.corpus(n)
    path = DATA_DIR / f"peers-{n}.jsonl"
    meta = path.with_suffix(".json")
    if not (path.is_file() and meta.is_file()):
        text_bytes = 0
        with open(src, "rb") as f, open(path, "wb") as out:
            for line in f:
                row = orjson.loads(line)
                row["text"] = " ".join(row["text"].split())
                text_bytes += len(row["text"].encode())
                out.write(orjson.dumps(row) + b"\n")
        meta.write_text(orjson.dumps({"documents": n, "text_bytes": text_bytes}).decode())
    return path, orjson.loads(meta.read_bytes())["text_bytes"]


def split_jsonl(src: Path, folder: Path, parts: int) -> None:
    """``src``'s lines as ``parts`` files of consecutive lines (the order kept) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = sum(1 for _ in open(src, "rb"))
    per = -(-lines // parts)
    with open(src, "rb") as f:
        for k in range(parts):
            with open(folder / f"part-{k:05d}.jsonl", "wb") as out:
                for _, line in zip(range(per), f):
                    out.write(line)


def run_tool(run: Run, python: Path | None, data: Path, work: Path, timeout: float | None,
             max_mb: float | None) -> dict:
    """One configuration on ``data``; its measures and where its removed ids are (read later, so that
    this process stays small while the next tool is measured)."""
    work.mkdir(parents=True)
    env = _clean_env(HF_HOME=str(work / "hf"), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    if run.env is None:  # `corpusmill run` as bench_dedup_run.py runs it: same shards, same workers
        pipe = work / "pipeline.yaml"
        pipe.write_text(yaml.safe_dump({"dataset": "bench", "inputs": [{"path": str(data), "id_field": "id"}],
                                        "execution": {"shard_bytes": bench_dedup_run.SHARD_BYTES},
                                        "steps": [{"dedup": {"exact": True, "near": True}}]}))
        cmd = [str(Path(sys.executable).parent / "corpusmill"), "run", str(pipe), "--store", str(work / "store"),
               "--workers", str(WORKERS), "--quiet"]
        env = None
        removed_at = work / "store"
    elif run.env == "datatrove":
        split_jsonl(data, work / "input", WORKERS)
        cmd = [str(python), str(PEERS_DIR / "datatrove_minhash.py"), str(work / "input"), str(work), *run.args]
        removed_at = work / "removed.json"
    else:
        driver = work / "driver.py"
        driver.write_text(equivalence.PEERS[EQUIVALENCE_NAMES[run.env]][2])
        cmd = [str(python), str(driver), str(data), str(work), *run.args]
        removed_at = work / "removed.json"
    measured = measure(cmd, log=work / "log.txt", timeout=timeout, max_mb=max_mb, env=env, cwd=work)
    return {**measured, "removed_at": str(removed_at)}


def removed_ids(where: str) -> tuple[set[str], dict]:
    """The ids a run removed, and what its driver said about itself (version, layout)."""
    path = Path(where)
    if path.suffix == ".json":
        out = orjson.loads(path.read_bytes())
        return set(out.pop("removed")), out
    import pyarrow.parquet as pq

    from importlib.metadata import version

    ids: set[str] = set()
    version_dir = next(path.glob("*/versions/*"))
    for f in sorted(version_dir.glob("rejects/*.parquet")):
        ids.update(pq.read_table(f, columns=["id"]).column("id").to_pylist())
    manifest = orjson.loads((version_dir / "manifest.json").read_bytes())
    lsh = next(s for s in manifest["stages"] if s["name"] == "dedup")["counters"]["lsh"]
    return ids, {"version": version("corpusmill"), "layout": f"{lsh['bands']} x {lsh['rows']}"}


def load_truth(data: Path) -> list[dedup_corpus.Doc]:
    """The corpus's rows without their text: id, family and edit rate."""
    docs = []
    with open(data, "rb") as f:
        for line in f:
            r = orjson.loads(line)
            docs.append(dedup_corpus.Doc(r["id"], "", r["family"], r["edit_rate"]))
    return docs


#: copies with at most this share of words edited (about 2 words in 500 bytes) stay above every tool's
#: threshold here (word 5-gram Jaccard ~0.75, 3-gram ~0.85)
LIGHT_EDITS = 0.02


def score(docs: list[dedup_corpus.Doc], removed: set[str]) -> dict:
    """bench_dedup_equivalence.py's counts plus precision and recall against the planted families:
    correct = removed - wrong (per family, removals up to its number of copies),
    precision = correct / removed, recall = correct / planted copies (rows with an edit rate).

    ``recall_light``: of the families of a base and one copy with at most ``LIGHT_EDITS`` of its
    words edited, the share where one of the two was removed (the pairs every tool should find)."""
    from collections import defaultdict

    counts = equivalence.score(docs, removed)
    planted = sum(d.edit_rate >= 0 for d in docs)
    correct = counts["removed"] - counts["wrong"]
    members = defaultdict(list)
    for d in docs:
        members[d.family].append(d)
    pairs = [m for m in members.values() if len(m) == 2 and max(d.edit_rate for d in m) <= LIGHT_EDITS]
    found = sum(any(d.id in removed for d in m) for m in pairs)
    return {**counts, "planted_copies": planted, "correct": correct,
            "precision": round(correct / counts["removed"], 4) if counts["removed"] else 1.0,
            "recall": round(correct / planted, 4) if planted else 1.0,
            "light_pairs": len(pairs), "recall_light": round(found / len(pairs), 4) if pairs else 1.0}


def compare(data: Path, work: Path, runs: list[Run], *, timeout: float | None = None, max_mb: float | None = None,
            env_dir: Path = ENV_DIR, pins_dir: Path = PEERS_DIR) -> list[dict]:
    """Every run of ``runs`` on ``data``, one after another, then their scores. A peer whose
    environment cannot be built is left out (the message says why)."""
    pythons: dict[str, Path | None] = {}
    measured = []
    for k, run in enumerate(runs):
        if run.env is not None:
            if run.env not in pythons:
                pythons[run.env] = ensure_env(run.env, env_dir, pins_dir)
            if pythons[run.env] is None:
                continue
        print(f"{run.label} ...", file=sys.stderr, flush=True)
        m = run_tool(run, pythons.get(run.env), data, work / f"{k}-{run.env or 'corpusmill'}", timeout, max_mb)
        if m.get("stopped"):
            print(f"  stopped: {m['stopped']}", file=sys.stderr)
        elif m.get("failed"):
            print(f"  {run.label} failed:\n{m['failed']}", file=sys.stderr)
        else:
            print(f"  {m['seconds']:.1f} s", file=sys.stderr)
        measured.append((run, m))
    docs = load_truth(data)
    rows = []
    for run, m in measured:
        row = {"run": run.key, "method": run.label, "env": run.env, "options": run.args,
               **{k: m[k] for k in ("seconds", "cpu_seconds", "peak_rss_mb", "peak_pss_mb")}}
        if m.get("stopped") or m.get("failed"):
            row.update(stopped=m.get("stopped"), failed=m.get("failed"))
        else:
            removed, about = removed_ids(m["removed_at"])
            row.update(**about, **score(docs, removed))
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    """The rows as a Markdown table; ``x corpusmill`` is each tool's wall time over corpusmill's."""
    ours = next((r["seconds"] for r in rows if r["env"] is None and not (r.get("stopped") or r.get("failed"))), None)
    lines = ["| tool, configuration | version | bands x rows | wall s | x corpusmill | CPU s | peak RSS MB | peak PSS MB "
             f"| removed | precision | recall | recall, copies <= {LIGHT_EDITS:.0%} edited |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratio = f"{r['seconds'] / ours:.1f}x" if ours else ""
        if r.get("stopped") or r.get("failed"):
            why = f"{r['stopped']}, stopped" if r.get("stopped") else "failed"
            lines.append(f"| {r['method']} | | | {why} | > {ratio} | {r['cpu_seconds']:.1f} | {r['peak_rss_mb']:,.0f} | "
                         f"{r['peak_pss_mb']:,.0f} | | | | |")
        else:
            lines.append(f"| {r['method']} | {r['version']} | {r['layout']} | {r['seconds']:.1f} | {ratio} | "
                         f"{r['cpu_seconds']:.1f} | {r['peak_rss_mb']:,.0f} | {r['peak_pss_mb']:,.0f} | {r['removed']:,} | "
                         f"{r['precision']:.4f} | {r['recall']:.4f} | {r['recall_light']:.4f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, nargs="+", default=[100_000],
                    help="corpus sizes, each a comparison of its own (default 100,000; the README has 1,000,000 too)")
    ap.add_argument("--peers", default=",".join(ENV_CHECKS),
                    help=f"which peers run, comma-separated (default all: {','.join(ENV_CHECKS)})")
    ap.add_argument("--skip-peers", action="store_true", help="corpusmill alone")
    ap.add_argument("--datatrove", choices=["both", "default", "tuned"], default="both",
                    help="which datatrove configurations run (default both; they cost the same)")
    ap.add_argument("--timeout", type=float, help="seconds one tool may run before it is stopped (default: no limit)")
    ap.add_argument("--max-mb", type=float,
                    help="MB of memory (PSS of its process tree) one tool may take before it is stopped, to keep a "
                         "shared machine alive (default: no limit)")
    args = ap.parse_args()
    wanted = set() if args.skip_peers else {p.strip() for p in args.peers.split(",") if p.strip()}
    unknown = wanted - set(ENV_CHECKS)
    if unknown:
        ap.error(f"unknown peer(s) {', '.join(sorted(unknown))}; choose from {', '.join(ENV_CHECKS)}")
    datatrove = {"both": {"datatrove", "datatrove-tuned"}, "default": {"datatrove"}, "tuned": {"datatrove-tuned"}}
    runs = [r for r in RUNS if r.env is None or (r.env in wanted and (r.env != "datatrove" or r.key in datatrove[args.datatrove]))]
    for n in args.docs:
        data, text_bytes = corpus(n)
        work = DATA_DIR / "peers-work"
        shutil.rmtree(work, ignore_errors=True)
        try:
            rows = compare(data, work, runs, timeout=args.timeout, max_mb=args.max_mb)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        planted = next((r["planted_copies"] for r in rows if "planted_copies" in r), None)
        print(f"\n{n:,} documents ({text_bytes / 1e6:.0f} MB of text, {planted or 0:,} planted copies), "
              f"{WORKERS} workers, machine: {os.cpu_count()} cores")
        print(table(rows))
        save_result(f"peers_{n}", {"documents": n, "text_mb": round(text_bytes / 1e6, 1), "planted_copies": planted,
                                   "workers": WORKERS, "timeout": args.timeout, "max_mb": args.max_mb, "rows": rows})
        ours = next(r for r in rows if r["env"] is None)
        if ours.get("failed") or ours.get("stopped"):  # a peer may fail; corpusmill may not
            raise SystemExit(f"corpusmill did not finish ({ours.get('stopped') or ''}):\n{ours.get('failed') or ''}")


if __name__ == "__main__":
    main()
