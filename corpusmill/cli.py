"""The ``corpusmill`` command line.

Progress and summaries go to stderr; what scripts consume (a reference, JSON) goes to stdout.
A user mistake ends with a message and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from pathlib import Path

from corpusmill import __version__
from corpusmill.errors import CorpusmillError


#: longest error message printed (characters)
MAX_ERROR_CHARS = 20_000


def _console(stderr: bool = True):
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not console.is_terminal:  # logs and pipes: wide enough for the stage table, not 80 columns
        console = Console(stderr=stderr, highlight=False, soft_wrap=True, width=160)
    return console


def _store(args):
    from corpusmill.pipelines.config import store_root
    from corpusmill.store import Store

    return Store(store_root(getattr(args, "store", None), None, None))


# ----------------------------------------------------------------------------- rendering


def stage_table(manifest: dict):
    from rich.table import Table

    t = Table(title=f"{manifest['dataset']}@{manifest['version']}", title_justify="left")
    for col in ("stage", "in", "kept", "rejected", "reasons", "changes (top 3)"):
        t.add_column(col, justify="right" if col in ("in", "kept", "rejected") else "left")
    for st in manifest["stages"]:
        rej = sum(st["rejected"].values())
        reasons = ", ".join(f"{r} {n:,}" for r, n in sorted(st["rejected"].items(), key=lambda kv: -kv[1]))
        counters = sorted(((k, v) for k, v in st.get("counters", {}).items() if isinstance(v, int) and v),
                          key=lambda kv: -kv[1])[:3]
        rows_in = f"{st['in']:,}" + (f" +{st['added']:,} new" if st.get("added") else "")
        t.add_row(st["name"], rows_in, f"{st['kept']:,}", f"{rej:,}", reasons,
                  ", ".join(f"{k} {v:,}" for k, v in counters))
    return t


def print_run_summary(result, console) -> None:
    m = result.manifest
    console.print(stage_table(m))
    c = m["counts"]
    rejected = sum(sum(r.values()) for r in c["rejected"].values())
    splits = ", ".join(f"{s} {n:,}" for s, n in m["splits"].items())
    how = f"built in {result.seconds:.1f}s" if result.created else "already published (identical inputs and config): nothing redone"
    added = f" + added {c['added']:,}" if c.get("added") else ""
    console.print(f"input {c['input']:,}{added} = kept {c['kept']:,} + rejected {rejected:,}; splits: {splits}; {how}")
    print_run_warnings(m, console)


def print_run_warnings(manifest: dict, console) -> None:
    """After the summary: what the stages' own reports say (each quality rule's share of the rows),
    then every warning, in bold yellow, so that a rule rejecting most of the data is not missed."""
    from rich.markup import escape

    from corpusmill.dataprep.quality import run_notes

    lines, warnings = run_notes(manifest)
    warnings += strata_warnings(manifest)
    for line in lines:
        console.print(escape(line))
    for warning in warnings:
        console.print(f"[bold yellow]warning: {escape(warning)}[/]")


def strata_warnings(manifest: dict) -> list[str]:
    """A stratified split whose worst label is further from its ratio than the step's tolerance
    (``strata_over_tolerance``): said in the summary, not only in the report."""
    out = []
    options = {name: cfg for name, cfg in _step_options(manifest)}
    for st in manifest.get("stages", []):
        counters = st.get("counters", {})
        if counters.get("strata_over_tolerance"):
            opts = options.get(st["name"], {})
            gap = counters.get("max_stratum_gap_permille", 0) / 1000
            out.append(f"split step '{st['name']}': a {opts.get('stratify', 'stratify')} value is {gap:.1%} off its "
                       f"split ratio, more than tolerance {opts.get('tolerance', 0.02):g} (groups are split whole: a "
                       "label with few groups cannot follow the ratios); see the report's labels per split, or "
                       "raise tolerance to accept it")
    return out


def _step_options(manifest: dict):
    """(step name, options) of the manifest's resolved steps, named as the runner names them."""
    from corpusmill.stage import manifest_steps

    for name, _, options in manifest_steps(manifest):
        yield name, options


# ----------------------------------------------------------------------------- commands


def cmd_run(args) -> int:
    profile = None
    if args.profile:  # first, so the workers' server and its workers are in the tree it measures
        from corpusmill.profiling import ProcessTreeProfile

        profile = ProcessTreeProfile().start()
    if args.executor == "local":  # (Ray Data has pandas paths of its own: nothing is skipped for it)
        from corpusmill.pipelines.workers import skip_pandas_probe, start_early

        start_early(args.workers)  # its imports overlap ours
        skip_pandas_probe()
    from corpusmill.pipelines import run_pipeline

    console = _console()
    result = run_pipeline(args.pipeline, store=args.store, workers=args.workers, tags=tuple(args.tag or ()),
                          executor=args.executor, quiet=args.quiet, ray_address=args.ray_address, profile=profile)
    if not args.quiet:
        print_run_summary(result, console)
    if profile is not None:
        if not result.created:  # stats.json keeps the figures of the run that built the version
            profile.snapshot()
        profile.stop()
        where = "recorded in stats.json" if result.created else "not recorded: the version was already published"
        console.print(f"{profile.describe()}; {where}")
    print(result.version.ref, flush=True)
    return 0


def cmd_refresh(args) -> int:
    from corpusmill.pipelines.workers import skip_pandas_probe, start_early

    start_early(args.workers)  # its imports overlap ours
    skip_pandas_probe()
    from corpusmill.pipelines.refresh import refresh

    result = refresh(_store(args), args.ref, args.add, remove=args.remove, tags=tuple(args.tag or ()),
                     workers=args.workers or os.cpu_count() or 1, input_index=args.input, quiet=args.quiet)
    if not args.quiet:
        print_run_summary(result, _console())
        r = result.manifest["refresh"]
        _console().print(f"refresh of {r['parent']}: {r['added']['rows_in']:,} new rows, {r['added']['kept']:,} kept; "
                         f"{r['removed']['rows']:,} removed ({r['removed']['ids_not_found']:,} listed ids not found)")
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
        _console().print(f"no datasets in {store.location}")
        return 0
    t = Table(title=store.location, title_justify="left")
    for col in ("reference", "created", "input", "kept", "splits", "tags"):
        t.add_column(col)
    corrupt = [r for r in rows if r.get("status") == "corrupt"]
    for r in rows:
        if r.get("status") == "corrupt":  # its manifest cannot be read: no counts to show
            t.add_row(f"{r['dataset']}@{r['version']}", r["created_at"], "[bold red]corrupt[/]", "", "",
                      ", ".join(r["tags"]))
            continue
        t.add_row(f"{r['dataset']}@{r['version']}", r["created_at"], f"{r['input']:,}", f"{r['kept']:,}",
                  ", ".join(f"{s} {n:,}" for s, n in r["splits"].items()), ", ".join(r["tags"]))
    _console(stderr=False).print(t)
    for r in corrupt:
        _console().print(f"[bold red]corrupt[/]: {r['problem']}", markup=True, highlight=False)
    return 0


def cmd_show(args) -> int:
    from corpusmill.datasets import summary

    version = _store(args).resolve(args.ref, verify=args.verify)
    if args.verify:  # every file against its sha256 before anything is shown
        version.check()
    s = summary(version)
    if args.json:
        from corpusmill.report.facts import mix_steps

        mix = mix_steps(version)
        if mix:  # each mix step's groups before and after, every group (the tables show the biggest)
            s["mix"] = mix
        print(json.dumps(s, indent=2))
        return 0
    from corpusmill.report.terminal import show

    show(version, _console(stderr=False), top=args.labels)
    return 0


def cmd_verify(args) -> int:
    """``datasets verify REF | --all``: exit 0 when the store is sound, 1 when something is
    damaged (each problem printed), 2 for a usage error."""
    from corpusmill.errors import StoreError
    from corpusmill.store import verify_store

    if (args.ref is None) == (not args.all):
        raise StoreError("datasets verify: name one version (NAME, NAME@VERSION or NAME@TAG) or pass --all")
    store = _store(args)
    check = verify_store(store, None if args.all else args.ref, checksums=not args.no_checksums)
    if args.json:
        print(json.dumps(check.as_json(), indent=2))
        return 0 if check.ok else 1
    con = _console(stderr=False)
    how = "sizes, row counts and sha256" if check.checksums else "sizes and row counts (no sha256)"
    con.print(f"{check.store}: {check.datasets} dataset(s), {check.versions} version(s), {check.files:,} files "
              f"checked ({how})", markup=False)
    for f in check.findings:
        con.print(f"{'error' if f.error else 'note'}: {f.where}: {f.problem}", markup=False)
    errors = sum(f.error for f in check.findings)
    if errors:
        damaged = len({f.where for f in check.findings if f.error})
        con.print(f"[bold red]{errors} problem(s)[/] in {damaged} place(s); a damaged version is refused by every "
                  "command that reads it")
    else:
        con.print("[bold green]ok[/]: every manifest, file and tag is as published")
    return 0 if check.ok else 1


def cmd_report(args) -> int:
    from corpusmill.report.terminal import report

    path = report(_store(args).resolve(args.ref), open_it=args.open, regenerate=not args.open)
    print(path)
    return 0


def cmd_stats(args) -> int:
    from corpusmill.train.config import require_train_extra

    version = _store(args).resolve(args.ref)
    require_train_extra()
    from corpusmill.train.system import quiet_libraries
    from corpusmill.train.token_stats import dataset_token_stats, print_token_stats

    quiet_libraries()
    report = dataset_token_stats(version, args.tokenizer, args.max_length, task=args.task, fmt=args.format,
                                 batch_size=args.batch_size, max_rows=args.max_rows)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_token_stats(report, _console(stderr=False))
    return 0


def cmd_diff(args) -> int:
    from corpusmill.datasets import diff

    store = _store(args)
    a, b = store.resolve(args.ref_a), store.resolve(args.ref_b)
    d = diff(a, b)
    from corpusmill.dataprep.split import moved_texts

    d["moved_texts"] = moved_texts(a, b)  # by content: a copy kept under a new id is the same text
    if args.drift:
        from corpusmill.dataprep.drift import drift

        d["drift"] = drift(a, b)
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
    con.print(f"rows that moved between splits: {d['moved_between_splits']:,} (same id)")
    from corpusmill.dataprep.split import describe_moved_texts

    for line in describe_moved_texts(d["moved_texts"]):
        con.print(line, markup=False)
    if d["moved_texts"]["held_out_after_train"]:
        con.print(f"[bold yellow]warning:[/] {d['moved_texts']['held_out_after_train']:,} texts of {d['from']}'s train "
                  f"split are in another split of {d['to']}: a model trained on {d['from']} has seen them")
    if d.get("refresh"):
        from corpusmill.pipelines.refresh import describe_refresh

        con.print(describe_refresh(d["refresh"]))
    if d.get("drift"):
        from corpusmill.dataprep.drift import describe_drift

        con.print(describe_drift(d["drift"]))
    return 0


def whole_number(low: int, high: int | None = None):
    """An argparse ``type`` for a whole number in [low, high]; the message names the range, so
    ``--workers 0`` is refused (exit 2) instead of being recorded as a worker count."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            wanted = f">= {low}" if high is None else f"from {low} to {high}"
            raise argparse.ArgumentTypeError(f"must be a whole number {wanted}, got {value}")
        return value

    return parse


def fraction(what: str, *, zero: bool):
    """An argparse ``type`` for ``what``, a number from 0 to 1 (0 itself only when ``zero``);
    NaN and infinities are refused too."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not ((0 <= value if zero else 0 < value) and value <= 1):  # False for NaN as well
            wanted = "0 <= x <= 1" if zero else "0 < x <= 1"
            raise argparse.ArgumentTypeError(f"must be {what}, a number with {wanted}, got {text}")
        return value

    return parse


def _column_list(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def _template(text: str) -> str:
    from corpusmill.datasets import template_from_flag

    return template_from_flag(text)


def cmd_export(args) -> int:
    from corpusmill.datasets import export

    version = _store(args).resolve(args.ref)
    result = export(version, args.format, args.out, columns=args.columns, drop_columns=args.drop_columns,
                    prompt_template=args.prompt_template, overwrite=args.overwrite)
    con = _console()
    for name, n in result.files.items():
        if name == "README.md":
            con.print(f"{os.path.join(args.out, name)}: dataset card (datasets.load_dataset('{args.out}') loads the splits)")
        else:
            con.print(f"{os.path.join(args.out, name) if args.format != 'hf' else name}: {n:,} rows")
    if result.shape != "rows":
        con.print(f"rows as {result.shape}: {', '.join(result.columns)}")
    for split, n in result.skipped.items():
        con.print(f"[yellow]warning[/]: {split}: {n:,} rows written to no file: they have no "
                  f"{' or '.join(['prompt', 'messages'] if result.shape == 'messages' else ['prompt'])} "
                  f"for the {result.shape} format (plain-text rows); --format jsonl keeps every row")
    for note in result.notes:
        con.print(f"note: {note}")
    print(os.path.abspath(args.out))
    return 0


def cmd_audit(args) -> int:
    from corpusmill.dataprep.audit import markdown_summary, order_splits, resolve_side, run_audit
    from corpusmill.dataprep.benchmarks import BenchmarkSpec, audit_fields_side, load_benchmark, parse_benchmark

    store = _store(args)
    kw = dict(text_field=args.text_field, label_field=args.label_field, id_field=args.id_field)
    fields = [f.strip() for f in args.fields.split(",") if f.strip()] if args.fields else None
    benchmarks = [(BenchmarkSpec(path=a, id_field=args.id_field), f"against:{os.path.basename(a)}") for a in args.against or ()]
    benchmarks += [(spec, spec.label) for spec in map(parse_benchmark, args.benchmark or ())]
    names = [name for _, name in benchmarks]
    if len(set(names)) < len(names):
        raise CorpusmillError(f"two benchmarks are named {', '.join(sorted({n for n in names if names.count(n) > 1}))}: "
                              "give each --benchmark its own name: (e.g. '{path: h.jsonl, name: humaneval}')")
    against = [load_benchmark(spec, store=store, text_field=args.text_field, label_field=args.label_field,
                              min_words=args.min_words).side(name) for spec, name in benchmarks]
    if args.ref:
        if args.train or args.test or args.validation:
            raise CorpusmillError("give either a dataset reference or --train/--test/--validation, not both")
        version = store.resolve(args.ref)
        splits = order_splits(version.splits())
        sides = {s: audit_fields_side(resolve_side(f"{version.ref}:{s}", store, default_split=s, **kw), fields)
                 for s in splits}
        pairs = [(sides[b], sides[a]) for i, a in enumerate(splits) for b in splits[i + 1:]]
        train = sides[splits[0]]
    else:
        if not args.train or not (args.test or args.validation or against):
            raise CorpusmillError("audit needs NAME@REF, or --train and at least one of --test, --validation, "
                                  "--against, --benchmark")
        train = audit_fields_side(resolve_side(args.train, store, default_split="train", **kw), fields)
        train.name = "train"
        evals = []
        for role in ("validation", "test"):
            spec = getattr(args, role)
            if spec:
                side = audit_fields_side(resolve_side(spec, store, default_split=role, **kw), fields)
                side.name = role
                evals.append(side)
        pairs = [(e, train) for e in evals]
        if len(evals) == 2:
            pairs.append((evals[1], evals[0]))
        sides = {s.name: s for s in [train, *evals]}
    pairs += [(a, train) for a in against]
    checks = tuple(c.strip() for c in args.checks.split(","))
    result = run_audit(pairs, ngram=args.ngram, threshold=args.threshold, checks=checks, within=list(sides.values()))
    report = result.report
    if args.fix:
        report["fix"] = _audit_fix(store, train, result, args.fix)
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(markdown_summary(report))
    print(f"report: {args.report}")
    if report.get("fix"):
        print(f"fixed version: {report['fix']['ref']} ({report['fix']['removed']:,} leaking train rows removed)")
    worst = report["summary"]["max_contamination_rate"]
    if args.fail_above is not None and worst > args.fail_above:
        print(f"corpusmill: contamination {worst:.4f} is above --fail-above {args.fail_above}", file=sys.stderr)
        return 1
    return 0


def _audit_fix(store, train, result, out_ref: str) -> dict:
    """Publish the audited version minus the training rows that leak (never the evaluation rows)."""
    from corpusmill.derive import publish_removal
    from corpusmill.store import parse_ref

    if train.version is None:
        raise CorpusmillError("--fix needs the training side to be a dataset version (NAME@REF[:split])")
    name, tag = parse_ref(out_ref)
    removals: dict[str, dict] = {}
    for pair in result.pairs:
        if pair.train_name != train.name:
            continue
        for check in ("exact", "near", "ngram"):  # the strongest evidence names the reason
            evidence = {h["train_id"]: h for h in pair.hits[check]}
            for train_id in pair.leaking_train_ids[check]:
                if train_id in removals.get(train.split, {}):
                    continue
                h = evidence.get(train_id, {})
                removals.setdefault(train.split, {})[train_id] = {
                    "reason": f"leaked_{check}", "duplicate_of": h.get("test_id"), "similarity": h.get("similarity"),
                    "detail": f"leaks into {pair.eval_name}: {h.get('why', check)}"}
    tags = () if tag == "latest" else (tag,)
    version, _ = publish_removal(store, train.version, name, "audit_fix", removals,
                                 {"audited": train.version.ref, "summary": result.report["summary"]}, tags)
    return {"ref": version.ref, "removed": sum(len(v) for v in removals.values())}
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
                          max_new_tokens=args.max_new_tokens, device=args.device, general=args.general,
                          console=_console())
    print(markdown_table(report), flush=True)
    _console().print(f"report: {args.report}")
    return 0


def cmd_sweep(args) -> int:
    from corpusmill.train.config import overrides_from_args, require_train_extra
    from corpusmill.train.sweep import Sweep, load_space, print_sweep_summary, require_sweep_extra

    overrides = overrides_from_args(args)
    space = load_space(args.space)
    sweep = Sweep(args.output, space, args.config, overrides)  # every config problem before torch loads
    require_train_extra()
    require_sweep_extra()
    console = _console()
    summary = sweep.run(args.trials, console=console)
    print_sweep_summary(summary, sweep.folder, console)
    print(sweep.folder.resolve(), flush=True)
    return 0


def cmd_models_compare(args) -> int:
    from corpusmill.train.config import require_train_extra

    version = _store(args).resolve(args.dataset)
    require_train_extra()
    from corpusmill.evaluate.models import compare_models, print_comparison
    from corpusmill.train.system import quiet_libraries

    quiet_libraries()
    report = compare_models(version, args.model, report=args.report, task=args.task, split=args.split,
                            max_rows=args.max_rows, max_train_rows=args.max_train_rows, label_field=args.label_field,
                            batch_size=args.batch_size, bootstrap=args.bootstrap, seed=args.seed, device=args.device,
                            console=_console())
    print_comparison(report, _console(stderr=False))
    _console().print(f"report: {args.report} and {Path(args.report).with_suffix('.html')}")
    return 0


def cmd_demo(args) -> int:
    if args.sft:
        from corpusmill.demo_sft import run_sft_demo

        return run_sft_demo(workdir=args.workdir, workers=args.workers, console=_console())
    from corpusmill.demo import run_demo

    return run_demo(workdir=args.workdir, workers=args.workers, console=_console(), fine_tune=args.fine_tune)


# ----------------------------------------------------------------------------- select preview
# `corpusmill select preview`: score a sample with a select step's settings and show the top and
# bottom rows and the score histogram, before committing to a cut. Nothing is written.


def cmd_select_preview(args) -> int:
    from corpusmill.dataprep.select import preview_select

    report = preview_select(pipeline=args.pipeline, step=args.step, dataset=args.dataset, target=args.target,
                            method=args.method, keywords=args.keyword, store=args.store, limit=args.limit,
                            show=args.show, bins=args.bins)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    from rich.table import Table

    con = _console(stderr=False)
    con.print(f"[bold]select preview[/bold]: {report['rows']:,} rows from {report['source']} scored by {report['method']}"
              + (f" against {report['target']}" if report.get("target") else "") + f" in {report['seconds']:.1f}s")
    if report.get("note"):
        con.print(report["note"])
    for title, rows in (("top", report["top"]), ("bottom", report["bottom"])):
        t = Table(title=f"{title} {len(rows)}", title_justify="left")
        t.add_column("domain_score", justify="right")
        t.add_column("id")
        t.add_column("text")
        for r in rows:
            t.add_row(f"{r['domain_score']:.4g}", r["id"], r["text"])
        con.print(t)
    t = Table(title="score histogram", title_justify="left")
    for col in ("from", "to", "rows", ""):
        t.add_column(col, justify="right" if col != "" else "left")
    peak = max((b["rows"] for b in report["histogram"]), default=1) or 1
    for b in report["histogram"]:
        t.add_row(f"{b['from']:.4g}", f"{b['to']:.4g}", f"{b['rows']:,}", "#" * round(40 * b["rows"] / peak))
    con.print(t)
    for cut in report["cuts"]:
        con.print(f"{cut['rule']}: keeps {cut['kept']:,} of {report['rows']:,} rows (lowest kept score {cut['lowest_kept_score']})")
    return 0


def add_select_parser(sub, store_help: str) -> None:
    s = sub.add_parser("select", help="domain selection tools")
    ssub = s.add_subparsers(dest="select_command", required=True, metavar="ACTION")
    x = ssub.add_parser("preview", help="score a sample and show top/bottom rows and the score histogram; writes nothing")
    x.add_argument("--pipeline", help="pipeline YAML with a select step: its inputs are read and scored with its settings")
    x.add_argument("--step", type=whole_number(0), default=None, help="which select step (0-based among select steps; default: the first)")
    x.add_argument("--dataset", help="NAME@REF[:split] in the store to score instead of a pipeline's inputs")
    x.add_argument("--target", help="with --dataset: examples of the domain (file or NAME@REF[:split])")
    x.add_argument("--method", choices=["auto", "hybrid", "ngram_importance", "classifier", "embedding", "keywords"], default=None,
                   help="with --dataset: scoring method (default: the stage's default)")
    x.add_argument("--keyword", action="append", help="with --method keywords: a keyword (repeatable)")
    x.add_argument("--limit", type=whole_number(0), default=20000, help="rows scored, from the start (default 20000; 0 = all)")
    x.add_argument("--show", type=whole_number(0), default=10, help="rows shown at the top and at the bottom (default 10)")
    x.add_argument("--bins", type=whole_number(1), default=10, help="histogram bins (default 10)")
    x.add_argument("--store", help=store_help)
    x.add_argument("--json", action="store_true", help="the preview as JSON on stdout")
    x.set_defaults(func=cmd_select_preview)


# ----------------------------------------------------------------------------- mix preview
# `corpusmill mix preview`: the groups before and after a mix step, without publishing.


def cmd_mix_preview(args) -> int:
    from corpusmill.dataprep.mix import preview_mix
    from corpusmill.errors import ConfigError

    config = None
    if args.config is not None:
        try:
            config = json.loads(args.config)
        except ValueError as err:
            raise ConfigError([f"--config: not JSON ({err}); write it as '{{\"max_per\": {{\"label\": 100}}}}'"],
                              source="mix preview") from None
        if not isinstance(config, dict):
            raise ConfigError(["--config: a JSON object of mix options, e.g. '{\"alpha\": {\"lang\": 0.3}}'"],
                              source="mix preview")
    elif args.dataset:
        raise ConfigError(["--dataset needs --config '{...}': the mix options to preview"], source="mix preview")
    report = preview_mix(pipeline=args.pipeline, step=args.step, dataset=args.dataset, config=config, store=args.store)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return 0
    con = _console(stderr=False)
    for line in mix_tables(report, top=args.top):
        con.print(line)
    return 0


def mix_tables(report: dict, top: int = 30) -> list:
    """The preview's lines and tables: one table per field, the ``top`` biggest groups and an
    'others' row for the rest."""
    from rich.markup import escape
    from rich.table import Table

    c = report["counters"]
    out = [f"[bold]mix preview[/bold]: {report['rows']:,} rows from {escape(report['source'])}; "
           f"{c['rows_mixed']:,} mixed -> {c['rows_out']:,} ({c['repeats']:,} repeats; over_cap "
           f"{report['rejected']['over_cap']:,}, downsampled {report['rejected']['downsampled']:,}); "
           f"{c['rows_passed_through']:,} passed through (splits {report['config']['splits']}); nothing published"]
    if report.get("note"):
        out.append(escape(report["note"]))
    for field, groups in report["groups"].items():
        t = Table(title=f"{field}: {len(groups):,} groups", title_justify="left")
        for col in ("group", "before", "share", "after", "share ", "target"):
            t.add_column(col, justify="left" if col == "group" else "right")
        nb = sum(g["before"] for g in groups) or 1
        na = sum(g["after"] for g in groups) or 1

        def row(name, b, a, target):
            t.add_row(escape(name), f"{b:,}", f"{b / nb:.1%}", f"{a:,}", f"{a / na:.1%}",
                      "" if target is None else f"{target:,}")

        shown = groups if len(groups) <= top + 1 else groups[:top]  # never an 'others' row of one group
        for g in shown:
            row(g["group"], g["before"], g["after"], g["target"])
        rest = groups[len(shown):]
        if rest:
            row(f"({len(rest):,} others)", sum(g["before"] for g in rest), sum(g["after"] for g in rest), None)
        out.append(t)
    return out


# ----------------------------------------------------------------------------- augment preview


def cmd_augment_preview(args) -> int:
    from corpusmill.augment.preview import preview_augment, print_preview

    report = preview_augment(_store(args), args.dataset, n=args.n, augmenter=args.augmenter)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print_preview(report, _console(stderr=False))
    return 0


# ----------------------------------------------------------------------------- parser


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; ``command`` (the subcommand about to run) leaves out what only
    another command needs: the train options' flags, built from the train config models, take
    ~0.15 s that ``run`` and ``refresh`` need not wait for."""
    train_flags = command is None or command in ("train", "sweep")
    p = argparse.ArgumentParser(prog="corpusmill", description="Prepare fine-tuning data as versioned, leakage-safe datasets.")
    p.add_argument("--version", action="version", version=f"corpusmill {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    store_help = ("dataset store: a folder or a URL such as s3://bucket/corpora (default: the pipeline's store:, "
                  "then $CORPUSMILL_STORE, then ./corpusmill-store)")

    r = sub.add_parser("run", help="validate and run a pipeline, publish a version, print NAME@VERSION")
    r.add_argument("pipeline", help="pipeline YAML file")
    r.add_argument("--workers", type=whole_number(1), default=None, help="worker processes (default: CPU count)")
    r.add_argument("--store", help=store_help)
    r.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="where the shards run: local worker processes, or Ray tasks (default: local)")
    r.add_argument("--ray-address", default=None,
                   help="--executor ray: the cluster to join (e.g. ray://head:10001 or auto); default: start a local "
                        "Ray instance with --workers CPUs")
    r.add_argument("--tag", action="append", help="also point this tag at the version (repeatable)")
    r.add_argument("--quiet", action="store_true", help="no summary table")
    r.add_argument("--profile", action="store_true",
                   help="measure CPU seconds (user+system) and peak RSS of the whole process tree (this command, the "
                        "workers' server and its workers, which time(1) does not see) and record them in the "
                        "version's stats.json under 'profile'; needs psutil")
    r.set_defaults(func=cmd_run)

    r = sub.add_parser("refresh", help="publish REF + new files - removed ids, processing only the new rows; print NAME@VERSION",
                       description="Run the parent's pipeline on the added files only, dedup them against the parent's "
                                   "index, give near twins of old rows their split, and publish a version whose parent "
                                   "is REF. See docs/refresh.md.")
    r.add_argument("ref", help="parent version: NAME, NAME@VERSION or NAME@TAG")
    r.add_argument("--add", nargs="+", required=True, metavar="FILE", help="new input files (read like the parent's input)")
    r.add_argument("--remove", metavar="IDS_FILE", help="file of ids to take out of the parent, one per line")
    r.add_argument("--input", type=whole_number(0), default=0, help="which of the parent's inputs gives the field mapping (default 0)")
    r.add_argument("--tag", action="append", help="also point this tag at the version (repeatable)")
    r.add_argument("--workers", type=whole_number(1), default=None, help="worker processes (default: CPU count)")
    r.add_argument("--store", help=store_help)
    r.add_argument("--quiet", action="store_true", help="no summary table")
    r.set_defaults(func=cmd_refresh)

    d = sub.add_parser("datasets", help="list, show, diff and export versions")
    dsub = d.add_subparsers(dest="datasets_command", required=True, metavar="ACTION")
    x = dsub.add_parser("list", help="every version in the store")
    x.add_argument("--store", help=store_help)
    x.add_argument("--json", action="store_true")
    x.set_defaults(func=cmd_list)
    x = dsub.add_parser("show", help="a version's summary: inputs, counts per stage and reason, splits, labels, languages")
    x.add_argument("ref", help="NAME, NAME@VERSION or NAME@TAG")
    x.add_argument("--store", help=store_help)
    x.add_argument("--json", action="store_true", help="the manifest as JSON on stdout")
    x.add_argument("--verify", action="store_true",
                   help="check every file's sha256 too, not only its size and row count (reads every file)")
    x.add_argument("--labels", type=whole_number(1), default=12, metavar="N",
                   help="labels (and a mix step's groups) listed one by one, most frequent first; the rest are one "
                        "'others' row (default 12)")
    x.set_defaults(func=cmd_show)
    x = dsub.add_parser("verify", help="check versions against their manifests (files, sizes, row counts, sha256), "
                                       "refs.json and leftovers, like git fsck; exit 1 when something is damaged")
    x.add_argument("ref", nargs="?", help="NAME, NAME@VERSION or NAME@TAG (or --all)")
    x.add_argument("--all", action="store_true", help="every version of every dataset in the store")
    x.add_argument("--no-checksums", action="store_true",
                   help="skip the sha256 of each file (sizes and Parquet row counts only: fast)")
    x.add_argument("--store", help=store_help)
    x.add_argument("--json", action="store_true", help="the findings as JSON on stdout")
    x.set_defaults(func=cmd_verify)
    x = dsub.add_parser("report", help="write a version's report.html and card.md again (or open the report)")
    x.add_argument("ref", help="NAME, NAME@VERSION or NAME@TAG")
    x.add_argument("--open", action="store_true", help="open report.html in a browser (written first if missing)")
    x.add_argument("--store", help=store_help)
    x.set_defaults(func=cmd_report)
    x = dsub.add_parser("stats", help="token lengths per split with a tokenizer: truncation, unknown tokens, padding; "
                                      "recommends max_seq_len and packing")
    x.add_argument("ref", help="NAME, NAME@VERSION or NAME@TAG")
    x.add_argument("--tokenizer", required=True, help="model folder or hub id whose tokenizer is measured")
    x.add_argument("--max-length", type=whole_number(1), default=512, help="the max_seq_len to check truncation against (default 512)")
    x.add_argument("--task", choices=["auto", "causal-lm", "classification"], default="auto",
                   help="auto = classification if the version has a label column, else causal-lm (EOS counted)")
    x.add_argument("--format", choices=["auto", "text", "prompt_response", "messages"], default="auto",
                   help="causal-lm input, as the train option format (default auto)")
    x.add_argument("--batch-size", type=whole_number(1), default=8, help="batch size of the padding estimate (default 8)")
    x.add_argument("--max-rows", type=whole_number(0), default=0, help="measure a stable sample of N rows per split (default 0 = all)")
    x.add_argument("--store", help=store_help)
    x.add_argument("--json", action="store_true", help="the statistics as JSON on stdout")
    x.set_defaults(func=cmd_stats)
    x = dsub.add_parser("diff", help="rows added/removed/changed per split between two versions, and drift")
    x.add_argument("ref_a")
    x.add_argument("ref_b")
    x.add_argument("--drift", action=argparse.BooleanOptionalAction, default=True,
                   help="label, language and length distributions and new n-grams of the added rows (default: on)")
    x.add_argument("--store", help=store_help)
    x.add_argument("--json", action="store_true")
    x.set_defaults(func=cmd_diff)
    x = dsub.add_parser("export", help="write a version as JSONL, Parquet, a Hugging Face DatasetDict, or for TRL or "
                                       "OpenAI fine-tuning",
                        description="Write one file per split and the rejects (every format; each reject keeps id, "
                                    "stage and reason) under --out.")
    x.add_argument("ref")
    x.add_argument("--format", choices=["jsonl", "parquet", "hf", "trl", "openai"], default="jsonl",
                   help="jsonl/parquet: DIR/<split>.jsonl|.parquet with every stored column; hf: a datasets.DatasetDict "
                        "(save_to_disk), rejects in DIR/rejects; trl: DIR/<split>.jsonl for TRL's SFTTrainer, "
                        "prompt/completion (the prompt written as 'corpusmill train' writes it) or messages, plus a "
                        "README.md so datasets.load_dataset(DIR) finds the splits; openai: DIR/<split>.jsonl of "
                        "{\"messages\": [...]} for OpenAI chat fine-tuning (default: jsonl)")
    x.add_argument("--out", required=True, help="output folder: one file per split, plus rejects; written beside it and "
                                                "renamed into place when complete, so it holds one whole export")
    x.add_argument("--overwrite", action="store_true",
                   help="replace an --out folder that already holds files, whole (default: refuse it, so that files "
                        "of two exports never mix)")
    cols = x.add_mutually_exclusive_group()
    cols.add_argument("--columns", type=_column_list, metavar="A,B",
                      help="jsonl/parquet/hf: keep only these stored columns; trl/openai: stored columns to add after "
                           "the trainer's (e.g. id); default: every column (jsonl/parquet/hf), only what the trainer "
                           "reads (trl/openai)")
    cols.add_argument("--drop-columns", type=_column_list, metavar="A,B",
                      help="jsonl/parquet/hf: leave these stored columns out (e.g. meta and q_* signals)")
    x.add_argument("--prompt-template", default=None, metavar="TEMPLATE", type=_template,
                   help="trl, prompt/response rows: how the prompt is written before the completion; use the "
                        "prompt_template of the train run to match (default: train's default, '{prompt}\\n'; "
                        "fields {prompt} and {system}; \\n and \\t typed here are a newline and a tab)")
    x.add_argument("--store", help=store_help)
    x.set_defaults(func=cmd_export)

    a = sub.add_parser("audit", help="train/test leakage: exact, near and n-gram overlap and label conflicts, with evidence")
    a.add_argument("ref", nargs="?", help="NAME@REF: audit every pair of the version's splits")
    a.add_argument("--train", help="training side: a file/glob (any reader format) or NAME@REF[:split]")
    a.add_argument("--test", help="test side: a file/glob or NAME@REF[:split]")
    a.add_argument("--validation", help="validation side: a file/glob or NAME@REF[:split]")
    a.add_argument("--against", action="append", help="public benchmark file to check the training side against (repeatable)")
    a.add_argument("--benchmark", action="append", metavar="SPEC",
                   help="a benchmark as decontaminate takes it (repeatable): a path, or a YAML mapping such as "
                        "'{path: HumanEval.jsonl.gz, fields: [prompt, canonical_solution], id_field: task_id, name: humaneval}'")
    a.add_argument("--fields", help="comma-separated fields of a version's rows matched one by one (text, prompt, response, "
                                    "system, messages, messages.<role>, trained); default: trained on instruction and "
                                    "chat rows, text otherwise")
    a.add_argument("--min-words", type=whole_number(0), default=4,
                   help="benchmark strings of fewer words are not indexed (default 4: a short answer such as '42' "
                        "would match every row saying the same); 0 keeps all")
    a.add_argument("--text-field", default="text", help="text field of file sides (default: text)")
    a.add_argument("--label-field", default=None, help="label field of file sides, for label conflicts")
    a.add_argument("--id-field", default=None, help="id field of file sides (default: generated ids)")
    a.add_argument("--ngram", type=whole_number(1), default=13, help="n-gram length in words (default 13, as GPT-3 and lm-evaluation-harness)")
    a.add_argument("--threshold", type=fraction("a Jaccard similarity", zero=False), default=0.8, help="Jaccard threshold of the near check (default 0.8)")
    a.add_argument("--checks", default="exact,near,ngram", help="comma-separated checks to run (default: all)")
    a.add_argument("--report", required=True, help="where to write the JSON report")
    a.add_argument("--fail-above", type=fraction("a contamination rate", zero=True), default=None,
                   help="exit 1 when a pair's contamination rate (share of test rows with any hit) exceeds this")
    a.add_argument("--fix", metavar="OUT_REF", help="publish NAME[@TAG]: the audited version without the leaking train rows")
    a.add_argument("--store", help=store_help)
    a.set_defaults(func=cmd_audit)
    add_select_parser(sub, store_help)
    m = sub.add_parser("mix", help="mixing tools").add_subparsers(dest="mix_command", required=True, metavar="ACTION")
    x = m.add_parser("preview", help="the groups before and after a mix step; writes nothing")
    x.add_argument("--pipeline", help="pipeline YAML with a mix step: its inputs are read (as read: the steps before "
                                      "mix are not applied) and mixed with its settings")
    x.add_argument("--step", type=whole_number(0), default=None, help="which mix step (0-based among mix steps; default: the first)")
    x.add_argument("--dataset", help="NAME@REF in the store: its rows (every split) are mixed with --config")
    x.add_argument("--config", help="with --dataset: the mix options as JSON, e.g. '{\"alpha\": {\"lang\": 0.3}}'")
    x.add_argument("--top", type=whole_number(1), default=30, help="groups shown per field, biggest first; the rest "
                                                                  "are one 'others' row (default 30)")
    x.add_argument("--store", help=store_help)
    x.add_argument("--json", action="store_true", help="the preview as JSON on stdout (every group)")
    x.set_defaults(func=cmd_mix_preview)
    g = sub.add_parser("augment", help="augmentation tools").add_subparsers(dest="augment_command", required=True, metavar="ACTION")
    x = g.add_parser("preview", help="source rows next to the rows the augment stage made from them; writes nothing")
    x.add_argument("--dataset", required=True, help="NAME@REF of a version built with an augment step")
    x.add_argument("-n", type=whole_number(1), default=5, help="source rows shown, each with all its new rows (default 5)")
    x.add_argument("--augmenter", help="only the new rows of this augmenter (its name)")
    x.add_argument("--store", help=store_help)
    x.add_argument("--json", action="store_true", help="the preview as JSON on stdout")
    x.set_defaults(func=cmd_augment_preview)

    if train_flags:
        from corpusmill.train.config import add_config_flags
    else:  # another command runs: train and sweep are listed, without their option flags
        def add_config_flags(parser, skip=()):
            return None

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
    e.add_argument("--max-rows", type=whole_number(0), default=0, help="score at most N rows, a stable sample by row id (default: 0 = all)")
    e.add_argument("--batch-size", type=whole_number(1), default=16, help="rows per inference batch (default: 16)")
    e.add_argument("--bootstrap", type=whole_number(1), default=1000, help="bootstrap resamples for intervals and paired tests (default: 1000)")
    e.add_argument("--seed", type=int, default=0, help="seed of the resamples and the row sample (default: 0)")
    e.add_argument("--max-new-tokens", type=whole_number(1), default=64,
                   help="prompt/response data: longest generated answer, greedy (default: 64)")
    e.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"], help="(default: auto)")
    e.add_argument("--general", metavar="FILE",
                   help="forgetting check (causal-lm): perplexity of base and fine-tuned on this general-domain text "
                        "(paragraphs of a text file, or JSONL with 'text')")
    e.set_defaults(func=cmd_eval)

    w = sub.add_parser("sweep", help="hyper-parameter search (grid, random, TPE) with pruning; every trial is a train run",
                       description="Search train options over a space YAML with Optuna; the study is kept in SQLite "
                                   "in the sweep folder, so rerunning the same command resumes. Ends with a ranked "
                                   "table, best.yaml and sweep.svg. See docs/sweeps.md.")
    w.add_argument("--space", required=True, help="space YAML: sampler, metric, fixed options, searched params")
    w.add_argument("--trials", type=whole_number(1), default=None,
                   help="finished trials the study should hold (default: the grid's size; required for random/tpe)")
    w.add_argument("--output", help="sweep folder (default: runs/sweep-<dataset>-<task>)")
    w.add_argument("--config", help="YAML file of train options shared by every trial")
    add_config_flags(w, skip=("output", "resume"))
    w.set_defaults(func=cmd_sweep)

    c = sub.add_parser("models", help="choose the model to fine-tune").add_subparsers(dest="models_command", required=True,
                                                                                 metavar="ACTION")
    x = c.add_parser("compare", help="candidate models on a version's data: size, tokenizer fit, perplexity or a linear "
                                     "probe, speed, memory, licence; a ranked table and a recommendation",
                     description="Measure each --model on one split of NAME@REF and rank them (probe macro-F1 for "
                                 "classification, perplexity for causal-lm; ties by speed). Writes OUT.json and "
                                 "OUT.html. See docs/models.md.")
    x.add_argument("--dataset", required=True, help="NAME@REF of the data the model will be fine-tuned on")
    x.add_argument("--model", action="append", required=True,
                   help="a model folder (or a Hugging Face hub id, which needs the network); repeat for each candidate")
    x.add_argument("--task", default="auto", choices=["auto", "classification", "causal-lm"],
                   help="classification: linear probe; causal-lm: perplexity (default: auto = classification where "
                        "the version has the label field)")
    x.add_argument("--split", default="validation", help="split compared on (default: validation); the probe trains on train")
    x.add_argument("--max-rows", type=whole_number(0), default=0,
                   help="compare on at most N rows of the split, a stable sample by row id (default: 0 = all)")
    x.add_argument("--max-train-rows", type=whole_number(1), default=2000,
                   help="rows of the train split the probe learns from (default: 2000)")
    x.add_argument("--label-field", default="label", help="label column, or meta.KEY (default: label)")
    x.add_argument("--batch-size", type=whole_number(1), default=32, help="rows per inference batch (default: 32)")
    x.add_argument("--bootstrap", type=whole_number(1), default=1000, help="bootstrap resamples for intervals (default: 1000)")
    x.add_argument("--seed", type=int, default=0, help="seed of the row samples and resamples (default: 0)")
    x.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"], help="(default: auto)")
    x.add_argument("--report", required=True, help="where the JSON report goes; the HTML page is written beside it")
    x.add_argument("--store", help=store_help)
    x.set_defaults(func=cmd_models_compare)

    m = sub.add_parser("demo", help="build the demo corpus from Debian's fortunes, run the demo pipeline, fine-tune and evaluate")
    m.add_argument("--workdir", default="corpusmill-demo", help="where the corpus, pipeline and store go")
    m.add_argument("--workers", type=whole_number(1), default=None)
    m.add_argument("--fine-tune", action=argparse.BooleanOptionalAction, default=True,
                   help="end with a LoRA fine-tune of all-MiniLM-L6-v2 and its evaluation (default: on)")
    m.add_argument("--sft", action="store_true",
                   help="the instruction/chat walkthrough instead: man pages as an Alpaca JSON array and a ShareGPT "
                        "dump, pipelines/sft.yaml (decontaminated against HumanEval), exported for TRL")
    m.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    command = next((w for w in words if not w.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    try:
        return args.func(args)
    except CorpusmillError as err:
        from corpusmill.safeyaml import shorten

        # a message is for reading: one quoting a huge value is cut (each problem is bounded already)
        print(f"corpusmill: error: {shorten(str(err), MAX_ERROR_CHARS)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("corpusmill: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as err:
        # a file the command could not write (a read-only store or filesystem, permissions, a
        # full disk): the user's to fix, so one line naming the path, not a traceback
        if err.errno not in _WRITE_ERRNOS:
            raise
        print(f"corpusmill: error: {_write_error(err)}", file=sys.stderr)
        return 2


#: OSErrors that say "this place cannot be written", not "corpusmill has a bug"
_WRITE_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT}


def _write_error(err: OSError) -> str:
    import re

    fix = {errno.EROFS: "the filesystem is read-only; write elsewhere (--store, --out) or make it writable",
           errno.ENOSPC: "no space left on the device; free some space or write to another disk",
           errno.EDQUOT: "over the disk quota; free some space or write to another disk"}.get(
        err.errno, "permission denied; write elsewhere (--store, --out) or fix the permissions")
    if not err.filename:
        return fix
    # the file being written, not the temporary name it is written under (.name.tmp-PID)
    path = re.sub(r"/[.]([^/]+)[.]tmp-[0-9]+$", r"/\1", str(err.filename))
    return f"cannot write {path}: {fix}"


if __name__ == "__main__":
    sys.exit(main())
