"""Stage kinds available in a pipeline's ``steps``: YAML key -> stage class.

Classes are imported on first use, so reading a pipeline imports only the stages it names.
"""

from __future__ import annotations

import importlib

STAGES: dict[str, str | type] = {
    "dedup": "corpusmill.dataprep.dedup:Dedup",
    "clean": "corpusmill.dataprep.clean:Clean",
    "quality": "corpusmill.dataprep.quality:Quality",
    "split": "corpusmill.dataprep.split:Split",
    "decontaminate": "corpusmill.dataprep.decontaminate:Decontaminate",
    "select": "corpusmill.dataprep.select:Select",
    "mix": "corpusmill.dataprep.mix:Mix",
    "pii": "corpusmill.dataprep.pii:Pii",
    "language": "corpusmill.dataprep.language:Language",
    "augment": "corpusmill.augment.stage:Augment",
    "unseen_ids": "corpusmill.dataprep.ids:UnseenIds",
}


def register_stage(stage_cls: type, kind: str | None = None) -> type:
    """Make a stage class available in pipelines under ``kind`` (default: its ``kind``).

    Stages outside corpusmill register themselves this way; it returns the class, so it also
    works as a decorator.
    """
    STAGES[kind or stage_cls.kind] = stage_cls
    return stage_cls


class _Lazy(dict):
    """A mapping kind -> class that imports the class when it is looked up."""

    def __getitem__(self, kind):
        target = STAGES[kind]
        if isinstance(target, type):
            return target
        module, _, cls = target.partition(":")
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
