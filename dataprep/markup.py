"""HTML/XML markup to plain text, for the ``clean`` stage.

Only rows that a vectorised pre-check flags reach this code (see :func:`markup_candidates`), so
the per-row Python work here is paid by the rows that carry markup, not by the corpus.

Two readings of a row, because plain text is full of things that look like tags: IRC logs
(``<Knghtbrd> hi``, ``<A> yes``), C includes (``<stdio.h>``), e-mail addresses in angle brackets.

* **document**: the row *is* markup: it starts with ``<!DOCTYPE``, ``<?xml`` or ``<html``, or it
  starts with a tag and ends with an end tag, where the first tag is a known HTML element or has
  the end tag's name (an XML record). Every tag is markup, and whitespace collapses as a browser
  would render it.
* **fragment**: text with some HTML in it. A tag is markup only when it is a known HTML element
  and is unambiguous: an end tag, a tag with attributes, or a void element (``<br>``, ``<hr>``)
  or start tag whose end tag is also in the row, unless it opens a line and is followed by a
  space (a chat speaker: ``<br> hi``). Anything else stays as written, and so does the text's own
  layout.

Either way block elements become line or paragraph breaks, ``script``/``style``/``noscript``/
``template``/``svg``/``iframe`` lose their content, comments and processing instructions go,
CDATA keeps its content and character references (``&amp;``, ``&#8217;``) are decoded.
"""

from __future__ import annotations

import html
import re

import pyarrow as pa
import pyarrow.compute as pc

#: HTML elements (WHATWG living standard plus common legacy ones such as center and font)
HTML_ELEMENTS = frozenset("""
a abbr acronym address area article aside audio b base bdi bdo big blink blockquote body br button canvas
caption center cite code col colgroup data datalist dd del details dfn dialog dir div dl dt em embed fieldset
figcaption figure font footer form frame frameset h1 h2 h3 h4 h5 h6 head header hgroup hr html i iframe img
input ins kbd label legend li link main map mark marquee menu meta meter nav nobr noframes noscript object ol
optgroup option output p param picture pre progress q rp rt ruby s samp script search section select small
source span strike strong style sub summary sup svg table tbody td template textarea tfoot th thead time
title tr track tt u ul var video wbr
""".split())

VOID_ELEMENTS = frozenset("area base br col embed hr img input link meta param source track wbr".split())
#: elements whose content is not text a reader sees
DROP_CONTENT = frozenset("script style noscript template svg iframe object".split())
#: elements that start and end a paragraph
PARAGRAPH_BREAK = frozenset("""
address article aside blockquote body caption center details dialog dir div dl fieldset figcaption figure
footer form frameset h1 h2 h3 h4 h5 h6 head header hgroup hr html main menu nav ol p pre section summary
table title ul
""".split())
#: elements that start and end a line
LINE_BREAK = frozenset("br dd dt li legend option tr".split())
#: table cells: separated by a space
CELL = frozenset("td th".split())

_NAMES = "|".join(sorted(HTML_ELEMENTS, key=len, reverse=True))
# RE2 (Arrow) patterns for the vectorised pre-check. A row matching none of them has no markup.
_DOCUMENT_RE2 = (
    r"(?is)^\s*(?:<!doctype|<\?xml|<html[\s>]"
    r"|<[a-z][\w:.-]*(?:\s[^<>]*)?>.*</[a-z][\w:.-]*\s*>\s*$)"
)
_FRAGMENT_RE2 = (
    rf"(?i)</(?:{_NAMES})\s*>"  # an end tag of a known element
    rf"|<(?:{_NAMES})\s+[a-z_:][\w:.-]*\s*=[^<>]*>"  # a known element with attributes
    r"|<(?:br|hr|wbr)\s*/?>|<img\s[^<>]*>"  # void elements
    r"|<!--"  # a comment
)
_ENTITY_RE2 = r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});"

# Python patterns for the conversion itself.
_TOKEN = re.compile(
    r"<!--.*?(?:-->|\Z)"  # comment (an unterminated one runs to the end)
    r"|<!\[CDATA\[(?P<cdata>.*?)(?:\]\]>|\Z)"
    r"|<![^<>]*>"  # doctype and other declarations
    r"|<\?.*?(?:\?>|\Z)"  # processing instruction
    r"|<(?P<end>/)?(?P<name>[A-Za-z][\w:.-]*)(?P<attrs>(?:\s[^<>]*?)?)(?P<selfclose>/)?>",
    re.S,
)
_END_TAG_NAMES = re.compile(r"</\s*([A-Za-z][\w:.-]*)")
_FIRST_TAG = re.compile(r"\s*<([A-Za-z][\w:.-]*)")
_LAST_END_TAG = re.compile(r"</\s*([A-Za-z][\w:.-]*)\s*>\s*$")
_ATTRIBUTE = re.compile(r"\s[A-Za-z_:][\w:.-]*\s*=")
_SPACES = re.compile(r"\s+")
_DECLARED = re.compile(r"\s*(?:<!doctype|<\?xml|<html[\s>])", re.I)


def markup_candidates(texts: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Two boolean masks, computed with Arrow kernels: rows that may carry markup (documents or
    fragments; :func:`markup_to_text` decides), and the other rows that hold character references."""
    tagged = pc.or_(pc.match_substring_regex(texts, _DOCUMENT_RE2), pc.match_substring_regex(texts, _FRAGMENT_RE2))
    entities = pc.and_(pc.invert(tagged), pc.match_substring_regex(texts, _ENTITY_RE2))
    return tagged, entities


def is_markup_document(text: str) -> bool:
    """A declared document, or one element around everything: the first tag is a known HTML
    element, or its name is the name of the last end tag (an XML record)."""
    if _DECLARED.match(text):
        return True
    first, last = _FIRST_TAG.match(text), _LAST_END_TAG.search(text)
    if first is None or last is None:
        return False
    name = first.group(1).lower()
    return name in HTML_ELEMENTS or name == last.group(1).lower()


class _TextBuilder:
    """Collects text pieces and breaks; a run of breaks becomes the largest of them, and the
    whitespace that touches a break is dropped."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pending = 0  # newlines owed before the next text: 0, 1 (line) or 2 (paragraph)

    def text(self, s: str) -> None:
        if not s:
            return
        if self.pending:
            s = s.lstrip()
            if not s:
                return
            if self.parts:
                self.parts[-1] = self.parts[-1].rstrip()
                self.parts.append("\n" * self.pending)
            self.pending = 0
        self.parts.append(s)

    def brk(self, newlines: int) -> None:
        self.pending = max(self.pending, newlines)

    def result(self) -> str:
        return "".join(self.parts).strip()


def _chat_nick(text: str, tag: re.Match) -> bool:
    """A bare tag that opens a line and is followed by a space: a speaker in a chat log
    (``<br> hi``, ``<b> yes``), not markup."""
    start, end = tag.start(), tag.end()
    return (start == 0 or text[start - 1] == "\n") and text[end:end + 1] == " "


def markup_to_text(text: str, document: bool | None = None) -> str:
    """The readable text of ``text``; ``document`` None decides between the two readings."""
    if document is None:
        document = is_markup_document(text)
    closed = None if document else {m.lower() for m in _END_TAG_NAMES.findall(text)}
    out = _TextBuilder()
    skipping: str | None = None  # inside script/style/...: the element whose end tag ends the skip
    pre = 0
    pos = 0

    def data(s: str) -> None:
        if document and not pre:
            s = _SPACES.sub(" ", s)
        out.text(html.unescape(s))

    for m in _TOKEN.finditer(text):
        name = (m.group("name") or "").lower()
        is_end = bool(m.group("end"))
        if skipping is not None:
            if is_end and name == skipping:
                skipping = None
                pos = m.end()
            continue
        before = text[pos:m.start()]
        if m.group(0).startswith("<!--") or m.group(0).startswith("<?") or (
            m.group(0).startswith("<!") and m.group("cdata") is None
        ):
            data(before)
            pos = m.end()
            continue
        if m.group("cdata") is not None:
            data(before)
            out.text(m.group("cdata"))
            pos = m.end()
            continue
        if not document:
            attributes = _ATTRIBUTE.search(m.group("attrs") or "") is not None
            markup = name in HTML_ELEMENTS and (
                is_end or attributes or (name in VOID_ELEMENTS or name in closed) and not _chat_nick(text, m)
            )
            if not markup:
                continue  # not a tag: it stays in the text (pos is not advanced)
        data(before)
        pos = m.end()
        if name in DROP_CONTENT and not is_end and not m.group("selfclose"):
            skipping = name
        elif name in PARAGRAPH_BREAK:
            out.brk(2)
            if name == "pre":
                pre = max(0, pre - 1) if is_end else pre + 1
        elif name in LINE_BREAK:
            out.brk(1)
        elif name in CELL and not is_end:
            out.text(" ")
    if pos == 0 and skipping is None and not document:
        return html.unescape(text)  # nothing was markup: the text keeps its layout
    if skipping is None:
        data(text[pos:])
    return out.result()


def decode_entities(text: str) -> str:
    return html.unescape(text)
