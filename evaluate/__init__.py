"""corpusmill.evaluate: base vs fine-tuned (vs previous run) on one split of one dataset version.

    from corpusmill.evaluate import evaluate_run
    report = evaluate_run("runs/tickets-classification", split="test", report="eval.json")
"""


def evaluate_run(run_dir, **kw) -> dict:
    """Run ``corpusmill eval``; returns the report written to ``report``. See compare.evaluate_run."""
    from corpusmill.evaluate.compare import evaluate_run as _evaluate_run

    return _evaluate_run(run_dir, **kw)


__all__ = ["evaluate_run"]
