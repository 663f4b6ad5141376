"""What a training run shows while it runs: a progress bar with loss and tokens/s on a terminal,
one log line with fixed keys every ``log_every`` steps otherwise (CI logs, files)."""

from __future__ import annotations

import sys
import time


class TrainLog:
    def __init__(self, total_steps: int, start_step: int, log_every: int, enabled: bool = True) -> None:
        self.total, self.every, self.enabled = total_steps, log_every, enabled
        self.bar = None
        self.tty = enabled and sys.stderr.isatty()
        if self.tty:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("loss {task.fields[loss]}  {task.fields[tps]} tok/s"),
                                TimeElapsedColumn(), TimeRemainingColumn(), transient=False)
            self.bar.start()
            self.task = self.bar.add_task("train", total=total_steps, completed=start_step, loss="-", tps="-")
        self.t0 = time.perf_counter()

    def step(self, step: int, loss: float, lr: float, tokens_per_s: float) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(self.task, completed=step, loss=f"{loss:.4f}", tps=f"{tokens_per_s:,.0f}")
        elif step % self.every == 0 or step == self.total:
            self.line(f"step {step}/{self.total} | loss {loss:.4f} | lr {lr:.2e} | {tokens_per_s:,.0f} tok/s "
                      f"| {time.perf_counter() - self.t0:.1f}s")

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.console.print(text, highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
