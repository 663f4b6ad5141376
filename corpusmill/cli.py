"""The ``corpusmill`` command line.

Progress and summaries go to stderr; what scripts consume (a reference, JSON) goes to stdout.
A user mistake ends with a message and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from corpusmill import __version__
from corpusmill.errors import CorpusmillError


def _console(stderr: bool = True):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def _store(args):
    from corpusmill.pipelines.config import store_root
    from corpusmill.store import Store

    return Store(store_root(getattr(args, "store", None), None, None))


# ----------------------------------------------------------------------------- rendering


def stage_table(manifest: dict):
    from rich.table import Table

    t = Table(title=f"{manifest['dataset']}@{manifest['version']}", title_justify="left")
    for col in ("stage", "in", "kept", "rejected", "reasons"):
        t.add_column(col, justify="right" if col in ("in", "kept", "rejected") else "left")
    for st in manifest["stages"]:
        rej = sum(st["rejected"].values())
        reasons = ", ".join(f"{r} {n:,}" for r, n in sorted(st["rejected"].items(), key=lambda kv: -kv[1]))
        t.add_row(st["name"], f"{st['in']:,}", f"{st['kept']:,}", f"{rej:,}", reasons)
    return t


def print_run_summary(result, console) -> None:
    m = result.manifest
    console.print(stage_table(m))
    c = m["counts"]
    rejected = sum(sum(r.values()) for r in c["rejected"].values())
    splits = ", ".join(f"{s} {n:,}" for s, n in m["splits"].items())
    how = f"built in {result.seconds:.1f}s" if result.created else "already published (identical inputs and config): nothing redone"
    console.print(f"input {c['input']:,} = kept {c['kept']:,} + rejected {rejected:,}; splits: {splits}; {how}")


# ----------------------------------------------------------------------------- commands


def cmd_run(args) -> int:
    from corpusmill.pipelines import run_pipeline

    console = _console()
    result = run_pipeline(args.pipeline, store=args.store, workers=args.workers, tags=tuple(args.tag or ()),
                          executor=args.executor)
    if not args.quiet:
        print_run_summary(result, console)
    print(result.version.ref, flush=True)
    return 0


def cmd_list(args) -> int:
    from rich.table import Table

    from corpusmill.datasets import versions_table

    store = _store(args)
    rows = versions_table(store)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        _console().print(f"no datasets in {store.root}")
        return 0
    t = Table(title=str(store.root), title_justify="left")
    for col in ("reference", "created", "input", "kept", "splits", "tags"):
        t.add_column(col)
    for r in rows:
        t.add_row(f"{r['dataset']}@{r['version']}", r["created_at"], f"{r['input']:,}", f"{r['kept']:,}",
                  ", ".join(f"{s} {n:,}" for s, n in r["splits"].items()), ", ".join(r["tags"]))
    _console(stderr=False).print(t)
    return 0


def cmd_show(args) -> int:
    from corpusmill.datasets import summary

    version = _store(args).resolve(args.ref)
    s = summary(version)
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    from rich.table import Table

    con = _console(stderr=False)
    con.print(f"[bold]{version.ref}[/bold]  parent: {s['parent'] or '-'}  code {s['code_version']}  seed {s['seed']}"
              f"  created {s['run'].get('created_at', '?')}")
    t = Table(title="inputs", title_justify="left")
    for col in ("path", "files", "bytes", "license"):
        t.add_column(col)
    for inp in s["inputs"]:
        t.add_row(inp["path"], str(len(inp["files"])), f"{sum(f['bytes'] for f in inp['files']):,}", inp["license"] or "-")
    con.print(t)
    con.print(stage_table(s))
    t = Table(title="splits", title_justify="left")
    t.add_column("split")
    t.add_column("rows", justify="right")
    for split, n in s["splits"].items():
        t.add_row(split, f"{n:,}")
    con.print(t)
    con.print(f"files under {version.path}")
    return 0


def cmd_diff(args) -> int:
    from corpusmill.datasets import diff

    store = _store(args)
    d = diff(store.resolve(args.ref_a), store.resolve(args.ref_b))
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    from rich.table import Table

    t = Table(title=f"{d['from']} -> {d['to']}", title_justify="left")
    for col in ("split", "rows before", "rows after", "added", "removed", "changed", "unchanged"):
        t.add_column(col, justify="left" if col == "split" else "right")
    for split, s in d["splits"].items():
        t.add_row(split, f"{s['rows_from']:,}", f"{s['rows_to']:,}", f"{s['added']:,}", f"{s['removed']:,}",
                  f"{s['changed']:,}", f"{s['unchanged']:,}")
    con = _console(stderr=False)
    con.print(t)
    con.print(f"rows that moved between splits: {d['moved_between_splits']:,}")
    return 0


def cmd_export(args) -> int:
    from corpusmill.datasets import export

    version = _store(args).resolve(args.ref)
    written = export(version, args.format, args.out)
    con = _console()
    for name, n in written.items():
        con.print(f"{os.path.join(args.out, name) if args.format != 'hf' else name}: {n:,} rows")
    print(os.path.abspath(args.out))
    return 0


def cmd_train(args) -> int:
    from corpusmill.train.config import build_config, overrides_from_args, require_train_extra

    cfg = build_config(args.config, overrides_from_args(args))  # every option problem at once, before torch loads
    require_train_extra()
    from corpusmill.train.run import train
    from corpusmill.train.system import quiet_libraries

    quiet_libraries()
    record = train(cfg)
    if record["hardware"]["world_size"] == 1 or os.environ.get("RANK", "0") == "0":
        from corpusmill.train.report import print_train_summary

        print_train_summary(record, _console())
        print(cfg.output_dir().resolve(), flush=True)
    return 0


def cmd_eval(args) -> int:
    from corpusmill.train.config import require_train_extra

    require_train_extra()
    from corpusmill.evaluate.compare import evaluate_run
    from corpusmill.train.system import quiet_libraries

    quiet_libraries()
    from corpusmill.evaluate.compare import markdown_table

    report = evaluate_run(args.run_dir, baseline=args.baseline, split=args.split, report=args.report, store=args.store,
                          max_rows=args.max_rows, batch_size=args.batch_size, bootstrap=args.bootstrap, seed=args.seed,
                          max_new_tokens=args.max_new_tokens, device=args.device, console=_console())
    print(markdown_table(report), flush=True)
    _console().print(f"report: {args.report}")
    return 0


def cmd_demo(args) -> int:
    from corpusmill.demo import run_demo

    return run_demo(workdir=args.workdir, workers=args.workers, console=_console(), fine_tune=args.fine_tune)


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="corpusmill", description="Prepare fine-tuning data as versioned, leakage-safe datasets.")
    p.add_argument("--version", action="version", version=f"corpusmill {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    store_help = "dataset store (default: the pipeline's store:, then $CORPUSMILL_STORE, then ./corpusmill-store)"

    r = sub.add_parser("run", help="validate and run a pipeline, publish a version, print NAME@VERSION")
    r.add_argument("pipeline", help="pipeline YAML file")
    r.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU count)")
    r.add_argument("--store", help=store_help)
    r.add_argument("--executor", choices=["local"], default="local", help="where stages run (default: local)")
    r.add_argument("--tag", action="append", help="also point this tag at the version (repeatable)")
    r.add_argument("--quiet", action="store_true", help="no summary table")
    r.set_defaults(func=cmd_run)

    d = sub.add_parser("datasets", help="list, show, diff and export versions")
    dsub = d.add_subparsers(dest="datasets_command", required=True, metavar="ACTION")
    x = dsub.add_parser("list", help="every version in the store")
    x.add_argument("--store", help=store_help)
    x.add_argument("--json", action="store_true")
    x.set_defaults(func=cmd_list)
    x = dsub.add_parser("show", help="a version's manifest: inputs, counts per stage and reason, splits")
    x.add_argument("ref", help="NAME, NAME@VERSION or NAME@TAG")
    x.add_argument("--store", help=store_help)
    x.add_argument("--json", action="store_true", help="the manifest as JSON on stdout")
    x.set_defaults(func=cmd_show)
    x = dsub.add_parser("diff", help="rows added/removed/changed per split between two versions")
    x.add_argument("ref_a")
    x.add_argument("ref_b")
    x.add_argument("--store", help=store_help)
    x.add_argument("--json", action="store_true")
    x.set_defaults(func=cmd_diff)
    x = dsub.add_parser("export", help="write a version as JSONL, Parquet or a Hugging Face DatasetDict")
    x.add_argument("ref")
    x.add_argument("--format", choices=["jsonl", "parquet", "hf"], default="jsonl")
    x.add_argument("--out", required=True, help="output folder: one file per split, plus rejects")
    x.add_argument("--store", help=store_help)
    x.set_defaults(func=cmd_export)

    from corpusmill.train.config import add_config_flags

    t = sub.add_parser("train", help="fine-tune a model on a dataset version (LoRA by default); writes a run folder",
                       description="Fine-tune on NAME@REF. Options come from the defaults, then --config FILE, then "
                                   "flags; every YAML key is also a flag (lora.r -> --lora-r). See docs/train-and-eval.md.")
    t.add_argument("--config", help="YAML file of options (the keys below without '--', nested lora: {r: 16})")
    add_config_flags(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="score base and fine-tuned models on a split, with intervals and paired tests",
                       description="Score the run's base model and its fine-tuned model (and a previous run) on the same "
                                   "split of the same dataset version; write OUT.json and print a Markdown table.")
    e.add_argument("run_dir", help="a folder written by 'corpusmill train'")
    e.add_argument("--baseline", default="base",
                   help="'base' (default), or a previous RUN_DIR, scored too and compared against (e.g. before a refresh)")
    e.add_argument("--split", default="test", help="split of the run's dataset version (default: test)")
    e.add_argument("--report", required=True, help="where the JSON report goes")
    e.add_argument("--store", help="dataset store (default: the one the run read, then $CORPUSMILL_STORE)")
    e.add_argument("--max-rows", type=int, default=0, help="score at most N rows, a stable sample by row id (default: 0 = all)")
    e.add_argument("--batch-size", type=int, default=16, help="rows per inference batch (default: 16)")
    e.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for intervals and paired tests (default: 1000)")
    e.add_argument("--seed", type=int, default=0, help="seed of the resamples and the row sample (default: 0)")
    e.add_argument("--max-new-tokens", type=int, default=64,
                   help="prompt/response data: longest generated answer, greedy (default: 64)")
    e.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"], help="(default: auto)")
    e.set_defaults(func=cmd_eval)

    m = sub.add_parser("demo", help="build the demo corpus from Debian's fortunes, run the demo pipeline, fine-tune and evaluate")
    m.add_argument("--workdir", default="corpusmill-demo", help="where the corpus, pipeline and store go")
    m.add_argument("--workers", type=int, default=None)
    m.add_argument("--fine-tune", action=argparse.BooleanOptionalAction, default=True,
                   help="end with a LoRA fine-tune of all-MiniLM-L6-v2 and its evaluation (default: on)")
    m.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CorpusmillError as err:
        print(f"corpusmill: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("corpusmill: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
