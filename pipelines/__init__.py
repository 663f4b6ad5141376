"""corpusmill.pipelines: pipeline config, stage registry, executors, shipped pipelines."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def run_pipeline(pipeline: str | Path | dict[str, Any], *, store: str | Path | None = None, workers: int | None = None,
                 tags: tuple[str, ...] = (), base_dir: str | Path | None = None, executor: str = "local",
                 quiet: bool = False, ray_address: str | None = None, profile=None):
    """Validate and run a pipeline (a YAML path or an already-loaded mapping), publish its version.

    Returns a :class:`corpusmill.pipelines.runner.RunResult`. Mirrors ``corpusmill run``.
    """
    import os

    from corpusmill.errors import ConfigError
    from corpusmill.pipelines.config import load_pipeline, parse_pipeline, store_root
    from corpusmill.pipelines.registry import REGISTRY
    from corpusmill.pipelines.runner import execute, make_plan
    from corpusmill.store import Store

    if executor not in ("local", "ray"):
        raise ConfigError([f"--executor {executor}: use 'local' or 'ray'"])
    if isinstance(pipeline, dict):
        config, steps, base = parse_pipeline(pipeline, REGISTRY, base_dir=Path(base_dir or Path.cwd()).resolve())
    else:
        config, steps, base = load_pipeline(pipeline, REGISTRY)
    root = store_root(str(store) if store else None, config, base)
    plan = make_plan(config, steps, base, store_root=root)
    return execute(plan, Store(root), workers=workers or os.cpu_count() or 1, tags=tags, quiet=quiet,
                   executor=executor, ray_address=ray_address, profile=profile)
