"""Shared helpers: small corpora written in the test, pipelines run into a temporary store."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import yaml

from corpusmill.pipelines import run_pipeline

REAL_TEXTS = [
    "The backup job failed again last night because the disk was full.",
    "Please reset my password, the link in the email has expired.",
    "Invoice 2231 was charged twice on my credit card this month.",
    "The mobile app crashes whenever I open the settings page on Android.",
    "Can you add dark mode to the web dashboard? My eyes would thank you.",
    "Our team cannot log in since the update this morning; the error says 403.",
    "I would like to cancel my subscription at the end of the billing period.",
    "The export to CSV drops every row that contains a comma in the title.",
    "Shipping to Canada took three weeks, which is longer than promised.",
    "Thanks for the quick fix yesterday, everything works as expected now.",
]


def write_jsonl(path: Path, rows, compress: bool = False) -> Path:
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    return path


def write_pipeline(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


#: what `corpusmill run` must never import (the trainer's stack)
TRAINING_MODULES = ("torch", "transformers", "peft", "sentence_transformers")


def assert_run_imports_none(pipeline: Path, store: Path, *, workers: int = 1, modules=TRAINING_MODULES) -> None:
    """Run ``corpusmill run PIPELINE`` in a fresh interpreter and fail if it did not succeed or any of
    ``modules`` got imported in the command's process."""
    import subprocess
    import sys

    code = (
        "import sys; from corpusmill.cli import main; "
        f"rc = main(['run', {str(pipeline)!r}, '--store', {str(store)!r}, '--workers', '{workers}', '--quiet']); "
        f"bad = [m for m in {tuple(modules)!r} if m in sys.modules]; "
        "assert rc == 0 and not bad, (rc, bad)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """The user cache (remote store mirrors, the report's text facts) in a folder of this test
    session, not the user's ~/.cache; a test that needs its own sets CORPUSMILL_CACHE again."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CORPUSMILL_CACHE", str(tmp_path_factory.mktemp("user-cache")))
        yield


@pytest.fixture
def tickets(tmp_path) -> Path:
    """A small JSONL corpus of support tickets with ids and labels."""
    rows = [{"ticket_id": f"t{i}", "body": t, "category": ["ops", "account", "billing", "app", "feature"][i % 5]}
            for i, t in enumerate(REAL_TEXTS)]
    return write_jsonl(tmp_path / "raw" / "tickets.jsonl", rows)


@pytest.fixture
def run(tmp_path):
    """run(config_dict, workers=1, store=...) -> RunResult, with the pipeline file in tmp_path."""

    def _run(config: dict, *, workers: int = 1, store: Path | None = None, name: str = "pipeline.yaml"):
        path = write_pipeline(tmp_path / name, config)
        return run_pipeline(path, store=store or tmp_path / "store", workers=workers)

    return _run
