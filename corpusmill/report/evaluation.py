"""``eval.html``: the evaluation report of ``corpusmill eval`` as plots.

Metric bars with their 95% bootstrap intervals per model, the difference to the baseline with
its interval and p-value, the confusion matrix per model (classification), and the rows where
the base and the fine-tuned model disagree.
"""

from __future__ import annotations

from pathlib import Path

from corpusmill.report import svg
from corpusmill.report.page import Page, table
from corpusmill.store import atomic_write_text

METRICS = {
    "classification": ["accuracy", "macro_f1", "macro_precision", "macro_recall"],
    "causal-lm": ["perplexity", "loss", "exact_match", "bleu", "chrf"],
}
#: metrics on a 0..1 scale: bars drawn from 0 to 1
UNIT = {"accuracy", "macro_f1", "macro_precision", "macro_recall", "micro_f1", "exact_match"}
MODEL_COLOURS = {"base": svg.MUTED, "fine_tuned": svg.KEPT, "previous": svg.colour(1)}


def write_eval_html(report: dict, path: str | Path) -> Path:
    path = Path(path)
    atomic_write_text(path, render(report))
    return path


def _p(p: float, resamples: int) -> str:
    return f"p < {2 / resamples:.3g}" if p == 0 else f"p = {p:.3f}"


def render(r: dict) -> str:
    models = list(r["models"])
    page = Page(f"evaluation of {Path(r['run']).name} on {r['dataset']} ({r['split']})",
                f"{r['task']}; {r['rows']:,} rows" + (f" (a stable sample of {r['rows_in_split']:,})" if r.get("rows_sampled") else "")
                + f"; {r['bootstrap']['resamples']:,} bootstrap resamples, 95% intervals; created {r['created_at']}")
    page.section("metrics", "Metrics per model")
    metrics = [m for m in METRICS.get(r["task"], []) if m in r["models"][models[0]]]
    page.text("Each metric of each model on the same rows; the whiskers are the 95% bootstrap interval (rows "
              "resampled with replacement). Overlapping intervals do not by themselves mean no difference: the paired "
              "test in the next section compares the models on the same resampled rows. Perplexity and loss: lower "
              "is better; the others: higher is better.")
    for m in metrics:
        bars = [(name, r["models"][name][m], *r["models"][name][f"{m}_ci"], MODEL_COLOURS.get(name, svg.colour(4)))
                for name in models]
        lo, hi = (0.0, 1.0) if m in UNIT else (None, None)
        page.html(svg.interval_bars([(m, bars)], title=m, lo=lo, hi=hi))
    sources = r.get("model_sources", {})
    page.html(table(["model", "what it is"], [[n, sources.get(n, "")] for n in models]))

    page.section("differences", "Fine-tuned against the baseline")
    resamples = r["bootstrap"]["resamples"]
    for comp, diffs in r["comparison"].items():
        rows, groups = [], []
        for m in metrics:
            d = diffs.get(m)
            if not d:
                continue
            lo, hi = d["difference_ci"]
            rows.append([m, f"{d['difference']:+.4f}", f"[{lo:+.4f}, {hi:+.4f}]", _p(d["p_value"], resamples)])
            groups.append((m, [("difference", d["difference"], lo, hi, svg.KEPT if (d["difference"] > 0) != (m in ("perplexity", "loss")) else svg.colour(3))]))
        title = comp.replace("fine_tuned_vs_", "fine-tuned minus ")
        page.plot(title, "The difference of each metric (fine-tuned minus baseline) with its paired 95% bootstrap "
                  "interval. An interval that does not cross 0 is a difference the choice of test rows does not "
                  "explain; blue is better, red worse.", svg.interval_bars(groups, title=title))
        page.html(table(["metric", "difference", "95% interval", "paired bootstrap"], rows))
        mc = diffs.get("mcnemar_accuracy")
        if mc:
            page.text(f"McNemar: {mc['only_second_correct']:,} rows right only after fine-tuning, "
                      f"{mc['only_first_correct']:,} only before; p = {mc['p_value']:.4f}.")

    cms = [(n, r["models"][n]["confusion_matrix"]) for n in models if "confusion_matrix" in r["models"][n]]
    if cms:
        page.section("confusion", "Confusion matrices")
        for name, cm in cms:
            values = cm["rows_true_columns_predicted"]
            shares = [[v / (sum(row) or 1) for v in row] for row in values]
            page.plot(name, "Rows are the true label, columns the predicted one; each cell counts test rows, shaded by "
                      "its share of the true label's rows. A good model is dark on the diagonal; a dark cell off it is "
                      "a pair of labels the model confuses.",
                      svg.matrix(cm["labels"], cm["labels"], values, shares=shares, title=f"confusion matrix {name}",
                                 row_title="true", col_title="predicted"))

    dis = r.get("disagreements") or []
    page.section("disagreements", "Where base and fine-tuned disagree")
    if not dis:
        page.text("The base and the fine-tuned model agree on every row.")
    elif "predicted" in dis[0]:
        page.text(f"The first {len(dis)} rows (in row order) where the two models predict different labels.")
        page.html(table(["id", "text", "label"] + models,
                        [[d["id"], d.get("text") or "", d["label"]] + [_mark(d["predicted"][n], d["label"]) for n in models]
                         for d in dis], text=(1,)))
    elif "answers" in dis[0]:
        page.text(f"The first {len(dis)} rows where the two models generate different answers (greedy decoding).")
        page.html(table(["prompt", "reference"] + models, [[d["prompt"], d["reference"]] + [d["answers"][n] for n in models]
                                                           for d in dis], text=tuple(range(2 + len(models)))))
    else:
        page.text(f"The {len(dis)} rows whose loss per token changed most between the models.")
        page.html(table(["id", "text"] + [f"loss/token {n}" for n in models],
                        [[d["id"], d.get("text") or ""] + [f"{d['loss_per_token'][n]:.3f}" for n in models] for d in dis],
                        text=(1,)))
    page.section("run", "Speed and set-up")
    speed = ["rows_per_second", "tokens_per_second", "latency_ms_per_row", "peak_memory_mb"]
    page.html(table(["model"] + speed, [[n] + [_num(r["models"][n].get(k)) for k in speed] for n in models]))
    hw = r.get("hardware", {})
    page.text("hardware: " + ", ".join(f"{k} {v}" for k, v in hw.items() if not isinstance(v, (dict, list))))
    return page.render()


def _mark(pred: str, truth: str) -> str:
    return f"{pred} ✓" if pred == truth else f"{pred} ✗"


def _num(v) -> str:
    return "-" if v is None else f"{v:,.2f}"
