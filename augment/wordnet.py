"""English WordNet 3.0 read offline from Debian's ``wordnet-base`` files, through NLTK's reader.

NLTK's ``wordnet`` corpus is normally fetched with ``nltk.download``, which cannot run here.
Debian's ``wordnet-base`` package installs the same Princeton database files
(``data.*``, ``index.*``, ``*.exc``) under ``/usr/share/wordnet``; the one file NLTK's
``WordNetCorpusReader`` also wants, ``lexnames`` (the 45 lexicographer file names, fixed by
the WordNet 3.0 format, see ``lexnames(5WN)``), is not in the package. :func:`open_wordnet`
opens the Debian folder with a reader that serves that one file from memory (NLTK 3.9+ refuses
symlinks and hard links that leave the corpus folder, so no copy or link farm is needed). Nothing is downloaded; where the files are missing the error says how to install them.
"""

from __future__ import annotations

import io
import os
import warnings
from functools import lru_cache
from pathlib import Path

from corpusmill.errors import CorpusmillError

#: where Debian's wordnet-base puts the database; CORPUSMILL_WORDNET overrides it
DEFAULT_DIR = "/usr/share/wordnet"
_NEEDED = ("data.noun", "data.verb", "data.adj", "data.adv",
           "index.noun", "index.verb", "index.adj", "index.adv")

# lexicographer file number, name and syntactic category (1 noun, 2 verb, 3 adj, 4 adv)
_LEXNAMES = (
    "adj.all 3", "adj.pert 3", "adv.all 4", "noun.Tops 1", "noun.act 1", "noun.animal 1",
    "noun.artifact 1", "noun.attribute 1", "noun.body 1", "noun.cognition 1", "noun.communication 1",
    "noun.event 1", "noun.feeling 1", "noun.food 1", "noun.group 1", "noun.location 1", "noun.motive 1",
    "noun.object 1", "noun.person 1", "noun.phenomenon 1", "noun.plant 1", "noun.possession 1",
    "noun.process 1", "noun.quantity 1", "noun.relation 1", "noun.shape 1", "noun.state 1",
    "noun.substance 1", "noun.time 1", "verb.body 2", "verb.change 2", "verb.cognition 2",
    "verb.communication 2", "verb.competition 2", "verb.consumption 2", "verb.contact 2",
    "verb.creation 2", "verb.emotion 2", "verb.motion 2", "verb.perception 2", "verb.possession 2",
    "verb.social 2", "verb.stative 2", "verb.weather 2", "adj.ppl 3",
)


class WordNetMissing(CorpusmillError):
    """The WordNet database files are not where they were looked for."""


def wordnet_dir(path: str | os.PathLike | None = None) -> Path:
    """The folder holding the database: ``path``, else $CORPUSMILL_WORDNET, else Debian's."""
    return Path(path or os.environ.get("CORPUSMILL_WORDNET") or DEFAULT_DIR)


def check_wordnet(path: str | os.PathLike | None = None) -> Path:
    """The database folder, or WordNetMissing naming the missing files and how to install them."""
    folder = wordnet_dir(path)
    missing = [n for n in _NEEDED if not (folder / n).is_file()]
    if missing:
        raise WordNetMissing(
            f"WordNet is not installed at {folder} (missing: {', '.join(missing)}). Synonym replacement "
            f"reads English WordNet 3.0 offline from Debian's package: run `make wordnet-data` or "
            f"`sudo apt-get install wordnet-base`, or point the augmenter's wordnet_dir option (or "
            f"$CORPUSMILL_WORDNET) at a folder holding WordNet 3.0's data.* and index.* files.")
    return folder


_LEXNAMES_TEXT = "".join(f"{i:02d}\t{name.replace(' ', chr(9))}\n" for i, name in enumerate(_LEXNAMES))


@lru_cache(maxsize=4)
def open_wordnet(path: str | None = None):
    """NLTK's ``WordNetCorpusReader`` over the offline database (one per folder and process)."""
    folder = check_wordnet(path).resolve()
    try:
        import nltk.data
        from nltk.corpus.reader.wordnet import WordNetCorpusReader
    except ImportError as e:
        raise CorpusmillError("synonym replacement needs NLTK: pip install 'corpusmill[augment]'") from e

    class DebianWordNet(WordNetCorpusReader):
        """The reader over a folder without ``lexnames``: that one file is served from memory."""

        def open(self, file):
            if file == "lexnames" and not (folder / "lexnames").is_file():
                return io.StringIO(_LEXNAMES_TEXT)
            return super().open(file)

        def map_wn(self, version="wordnet"):
            # the map to NLTK's own WordNet download serves multilingual (OMW) look-ups only,
            # which are not used; building it would look for that download
            return None

    # NLTK opens corpus files only under its data path: allow this folder (and no other)
    if str(folder) not in nltk.data.path:
        nltk.data.path.append(str(folder))
    with warnings.catch_warnings():  # "multilingual functions are not available": not used
        warnings.simplefilter("ignore", UserWarning)
        return DebianWordNet(str(folder), None)


class Synonyms:
    """Synonyms of English words from WordNet, as in EDA's ``get_synonyms``: the lemma names of
    every synset of the word, any part of speech (no tagger is needed), ``_`` and ``-`` read as
    spaces, the word itself left out. Sorted, so a seeded choice among them is reproducible
    (EDA's own code iterates a Python set, whose order changes between processes)."""

    def __init__(self, path: str | None = None) -> None:
        self.wordnet = open_wordnet(path)
        self._cache: dict[str, tuple[str, ...]] = {}

    def of(self, word: str) -> tuple[str, ...]:
        key = word.lower()
        found = self._cache.get(key)
        if found is None:
            names = set()
            for synset in self.wordnet.synsets(key):
                for lemma in synset.lemma_names():
                    name = lemma.replace("_", " ").replace("-", " ").lower()
                    if name != key and all(c.isalpha() or c == " " for c in name):
                        names.add(name)
            found = self._cache[key] = tuple(sorted(names))
        return found
