"""Stage kinds available in a pipeline's ``steps``: YAML key -> stage class.

Classes are imported on first use, so reading a pipeline imports only the stages it names.
"""

from __future__ import annotations

import importlib

STAGES: dict[str, str] = {
    "dedup": "corpusmill.dataprep.dedup:Dedup",
    "pii": "corpusmill.dataprep.pii:Pii",
    "language": "corpusmill.dataprep.language:Language",
}


class _Lazy(dict):
    """A mapping kind -> class that imports the class when it is looked up."""

    def __getitem__(self, kind):
        module, _, cls = STAGES[kind].partition(":")
        return getattr(importlib.import_module(module), cls)

    def __contains__(self, kind):
        return kind in STAGES

    def __iter__(self):
        return iter(STAGES)

    def __len__(self):
        return len(STAGES)

    def keys(self):
        return STAGES.keys()


REGISTRY = _Lazy()


def stage_class(kind: str):
    return REGISTRY[kind]
