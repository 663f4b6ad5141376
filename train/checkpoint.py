"""Resumable checkpoints: everything the next optimizer step depends on.

::

    <output>/checkpoints/step-000040/
      trainable.safetensors   the weights training changes (adapters + head, or all)
      optimizer.pt            AdamW moments and step counts (and the fp16 grad scaler)
      rng.pt                  torch (CPU and CUDA), numpy and Python random states
      state.json              step, micro-batches consumed (the data position), tokens seen,
                              scheduler state, best metric, evaluation history, resolved config

Restoring all of it makes a resumed run repeat the uninterrupted run's losses exactly: the data
order is a function of (seed, epoch, position), not of anything that happened before.
A checkpoint folder is written under a temporary name and renamed, so a kill mid-write leaves
the previous checkpoint intact.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from corpusmill.errors import CorpusmillError
from corpusmill.train.config import RESUMABLE_CHANGES


class CheckpointError(CorpusmillError):
    pass


def rng_state() -> dict:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def save(folder: Path, *, weights: dict, optimizer, scaler, state: dict, keep: int) -> Path:
    from safetensors.torch import save_file

    parent = folder.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".{folder.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file({k: v.contiguous() for k, v in weights.items()}, tmp / "trainable.safetensors")
    torch.save({"optimizer": optimizer.state_dict(), "scaler": scaler.state_dict() if scaler else None},
               tmp / "optimizer.pt")
    torch.save(rng_state(), tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=2) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    if keep:
        for old in sorted(parent.glob("step-*"))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return folder


def latest(checkpoints: Path) -> Path | None:
    found = sorted(p for p in checkpoints.glob("step-*") if (p / "state.json").is_file())
    return found[-1] if found else None


def find(resume: str, output: Path) -> Path:
    if resume == "auto":
        found = latest(output / "checkpoints")
        if found is None:
            raise CheckpointError(f"resume: auto, but {output / 'checkpoints'} holds no checkpoint")
        return found
    path = Path(resume)
    if not (path / "state.json").is_file():
        raise CheckpointError(f"resume: {path} is not a checkpoint folder (no state.json)")
    return path


def load(folder: Path, config: dict) -> tuple[dict, dict, dict]:
    """(trainable weights, optimizer payload, state); refuses a checkpoint of a different run."""
    from safetensors.torch import load_file

    state = json.loads((folder / "state.json").read_text())
    before = state["config"]
    changed = sorted(k for k in set(before) | set(config)
                     if k not in RESUMABLE_CHANGES and before.get(k) != config.get(k))
    if changed:
        diffs = "; ".join(f"{k}: {before.get(k)!r} -> {config.get(k)!r}" for k in changed)
        raise CheckpointError(f"checkpoint {folder} was written with other settings ({diffs}); resuming would not "
                              "continue the same run. Use the same options, or start a new run")
    weights = load_file(folder / "trainable.safetensors")
    payload = torch.load(folder / "optimizer.pt", weights_only=False)
    payload["rng"] = torch.load(folder / "rng.pt", weights_only=False)
    return weights, payload, state
