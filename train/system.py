"""Facts about where a run happened, and how much memory it took: what run.json and the
evaluation report record so a number can be traced to its machine and library versions."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

LIBRARIES = ("torch", "transformers", "peft", "safetensors", "tokenizers", "accelerate", "sacrebleu", "numpy", "pyarrow")


def library_versions() -> dict[str, str | None]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def code_version() -> dict:
    """corpusmill's version, and the git commit (with a dirty flag) when run from a checkout."""
    from corpusmill import __version__

    out: dict = {"corpusmill": __version__, "git_commit": None, "git_dirty": None}
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if sha.returncode == 0:
            out["git_commit"] = sha.stdout.strip()
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                   capture_output=True, text=True, timeout=5)
            out["git_dirty"] = bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def hardware(device: torch.device, world_size: int = 1) -> dict:
    out = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "world_size": world_size,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        out["gpu_memory_gb"] = round(props.total_memory / 2**30, 1)
        out["cuda"] = torch.version.cuda
    return out


def quiet_libraries() -> None:
    """Keep a command's output to what it says itself: no weight-loading bars, no deprecation
    notices from inside transformers/peft (errors still show)."""
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft)\b.*")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"peft\b.*")
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def resolve_device(name: str) -> torch.device:
    from corpusmill.errors import CorpusmillError

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise CorpusmillError("device: cuda, but torch sees no CUDA device (torch %s)" % torch.__version__)
        return torch.device("cuda", local_rank)
    if name == "mps" and not torch.backends.mps.is_available():
        raise CorpusmillError("device: mps, but MPS is not available")
    return torch.device(name)


class PeakMemory:
    """Peak memory inside a ``with`` block, in MiB.

    On CUDA: the allocator's peak (``max_memory_allocated``). On CPU: the process's peak resident
    set (VmHWM), reset at entry through /proc/self/clear_refs where the kernel allows it;
    otherwise it is the process's peak so far, which can only overstate the block's.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.mb: float | None = None
        self.exact = True

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            _return_freed_memory()
            try:
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                self.exact = False
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mb = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        else:
            self.mb = _vm_hwm_mb()

    def current(self) -> float | None:
        if self.device.type == "cuda":
            return round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        return _vm_hwm_mb()


def _return_freed_memory() -> None:
    """Hand memory freed by earlier work back to the OS (glibc keeps it otherwise), so a block's
    peak resident set is not inflated by what came before it."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _vm_hwm_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
