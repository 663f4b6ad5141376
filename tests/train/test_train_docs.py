"""docs/train-and-eval.md documents every trainer option (its table is generated from the config)."""

from pathlib import Path

from corpusmill.train.config import options_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "train-and-eval.md"


def test_every_option_is_in_the_docs_with_its_default():
    text = DOC.read_text()
    for key, default, _ in options_table():
        assert f"| `{key}` | `{default}` |" in text, key
