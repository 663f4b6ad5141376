"""The summary ``corpusmill train`` ends with (no torch needed to print it)."""

from __future__ import annotations


def print_train_summary(record: dict, console) -> None:
    from rich.table import Table

    s = record["summary"]
    m = record["model"]
    console.print(f"[bold]{record['dataset']['reference']}[/bold] -> {m['base']} ({m['method']}, "
                  f"{m['trainable_parameters']:,} of {m['parameters']:,} parameters trained)")
    if record["evals"]:
        t = Table(title="evaluations", title_justify="left")
        keys = [k for k in record["evals"][0] if k != "tokens_per_second"]
        for k in keys:
            t.add_column(k, justify="right")
        best = (record.get("best") or {}).get("step")
        for e in record["evals"]:
            t.add_row(*[f"{e[k]:.4f}" if isinstance(e[k], float) else str(e[k]) for k in keys],
                      style="bold" if e["step"] == best else None)
        console.print(t)
    if record.get("overfitting"):
        console.print(f"[yellow]warning: {record['overfitting']['message']}[/yellow]")
    stop = " (pruned)" if record.get("pruned") else " (stopped early)" if record["stopped_early"] else ""
    mem = f"{s['peak_memory_mb']:,.0f} MiB" if s["peak_memory_mb"] else "?"
    console.print(f"{record['steps']} steps{stop}, {s['tokens']:,} tokens in {s['train_seconds']:.1f}s "
                  f"({s['tokens_per_second']:,.0f} tokens/s), peak memory {mem}; final train loss "
                  f"{s['final_train_loss']:.4f}; model/ holds step {record['outputs']['model_step']}")
