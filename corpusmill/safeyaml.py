"""YAML read with limits: every YAML file or string a user hands corpusmill (a pipeline, train
options, a sweep space, a benchmark mapping on the command line) is parsed here.

``yaml.safe_load`` alone is safe from code execution, not from size: nine levels of nine
aliases (a "billion laughs" document of a few hundred bytes) load as a structure whose
expansion holds 9**9 values. Loading is cheap, because an alias is the same Python object, but
whatever walks it next (validation, an error message printing the bad value) expands it: 80 s,
11 GB and a 2.1 GB error message. :class:`LimitedLoader` counts the values a document would
hold with every alias expanded, and its nesting depth, while it composes, and stops at the
first value past a limit, so such a document fails in milliseconds with a message saying which
limit and where.
"""

from __future__ import annotations

import reprlib
from pathlib import Path
from typing import Any

import yaml

from corpusmill.errors import ConfigError

#: largest YAML file read (bytes): a pipeline or options file is a few kilobytes
MAX_BYTES = 10 * 1024 * 1024
#: most values (scalars, lists, mappings) a document may hold, each alias counted as the values
#: it expands to: far above any real pipeline, far below what makes validation slow
MAX_NODES = 200_000
#: deepest nesting of lists and mappings
MAX_DEPTH = 100
#: longest message (characters) about one bad value
MAX_MESSAGE = 500


class YamlLimitError(yaml.YAMLError):
    """A document past one of the limits; the message names the limit and the line."""


class LimitedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that counts, while composing, the values the document holds with
    aliases expanded (``max_nodes``) and its nesting depth (``max_depth``), and refuses an alias
    to a list or mapping that contains it (a recursive structure)."""

    max_nodes = MAX_NODES
    max_depth = MAX_DEPTH

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0
        self._sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (values, depth), aliases expanded

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            node = self.anchors.get(event.anchor)
            if node is not None:
                if isinstance(node, yaml.CollectionNode) and node.end_mark is None:  # still being composed
                    raise YamlLimitError(f"line {event.start_mark.line + 1}: alias *{event.anchor} refers to a list or "
                                         "mapping that contains it (a recursive structure); write the value out")
                size, depth = self._measure(node)
                if self._depth + depth > self.max_depth:  # a chain of aliases nests too
                    raise YamlLimitError(f"line {event.start_mark.line + 1}: alias *{event.anchor} nests lists and "
                                         f"mappings more than {self.max_depth} deep")
                self._count(size, event.start_mark, alias=event.anchor)
            return super().compose_node(parent, index)
        mark = self.peek_event().start_mark
        self._depth += 1
        if self._depth > self.max_depth:
            raise YamlLimitError(f"line {mark.line + 1}: lists and mappings nested more than {self.max_depth} deep")
        self._count(1, mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def _measure(self, node) -> tuple[int, int]:
        """(values, nesting depth) of ``node`` with aliases expanded, each node walked once. Every
        node measured here passed the depth check when it was composed, so this recursion is
        bounded by ``max_depth``."""
        key = id(node)
        if key not in self._sizes:
            if isinstance(node, yaml.SequenceNode):
                children = [self._measure(child) for child in node.value]
            elif isinstance(node, yaml.MappingNode):
                children = [self._measure(n) for pair in node.value for n in pair]
            else:
                children = []
            self._sizes[key] = (1 + sum(s for s, _ in children), 1 + max((d for _, d in children), default=0))
        return self._sizes[key]

    def _count(self, n: int, mark, alias: str | None = None) -> None:
        self._nodes += n
        if self._nodes > self.max_nodes:
            how = f" (alias *{alias} expands to {n:,})" if alias else ""
            raise YamlLimitError(
                f"line {mark.line + 1}: the document holds more than {self.max_nodes:,} values with its aliases "
                f"expanded{how}; an alias bomb? Write the values out, or use fewer aliases")


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` within the limits above; :class:`YamlLimitError` (a ``yaml.YAMLError``)
    past one. A string longer than :data:`MAX_BYTES` is refused unread."""
    if len(text) > MAX_BYTES:
        raise YamlLimitError(f"{len(text):,} characters; YAML longer than {MAX_BYTES // (1024 * 1024)} MB is not read")
    loader = LimitedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_file(path: str | Path, *, what: str = "file") -> Any:
    """A YAML file's content, read within the limits; :class:`ConfigError` (source: the path)
    when it is missing, too large, not UTF-8 or not valid YAML, with a message of bounded length."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise ConfigError([f"{what} not found: {path}" + (" (it is a folder)" if path.is_dir() else "")], source=source)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ConfigError([f"{size:,} bytes; a {what} larger than {MAX_BYTES // (1024 * 1024)} MB is not read "
                               "(is this the right file?)"], source=source)
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError([f"not UTF-8 text: {shorten(str(err))}"], source=source) from None
    except OSError as err:
        raise ConfigError([f"cannot be read: {err.strerror or err}"], source=source) from None
    try:
        return safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError([f"not valid YAML: {shorten(str(err))}"], source=source) from None


def shorten(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit:,} more characters)"


_REPR = reprlib.Repr()
_REPR.maxstring = 120
_REPR.maxother = 120
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 8
_REPR.maxlevel = 3


def short_repr(value: Any) -> str:
    """``repr(value)`` of bounded length, whatever its size or nesting: what an error message
    shows of a bad value (a shared or huge structure is never expanded whole)."""
    return shorten(_REPR.repr(value))
