"""A test-only stage: the split named by a meta field (to build versions with known splits)."""

from __future__ import annotations

import orjson
import pyarrow as pa

from corpusmill import schema as S
from corpusmill.stage import Stage, StageConfig, StageOutput


class SplitByFieldConfig(StageConfig):
    field: str = "split"


class SplitByField(Stage):
    kind = "split_by_field"
    Config = SplitByFieldConfig

    def process(self, batch, info):
        names = [orjson.loads(m)[self.config.field] for m in batch.column(S.META).to_pylist()]
        return StageOutput(batch.append_column(S.SPLIT, pa.array(names, pa.string())))
