"""WordNet is read offline from Debian's wordnet-base files, with a clear error where it is missing."""

from __future__ import annotations

import pytest

from corpusmill.augment.wordnet import DEFAULT_DIR, Synonyms, WordNetMissing, check_wordnet, open_wordnet


def test_synonyms_come_from_the_debian_files_without_nltk_data(monkeypatch, tmp_path):
    # no NLTK data anywhere NLTK would look: only the Debian folder is read
    monkeypatch.setenv("NLTK_DATA", str(tmp_path / "nowhere"))
    syn = Synonyms()
    assert {"glad", "felicitous"} <= set(syn.of("happy"))
    assert "car" in syn.of("automobile")
    assert "happy" not in syn.of("happy")
    assert syn.of("Happy") == syn.of("happy")
    assert list(syn.of("big")) == sorted(syn.of("big"))  # sorted: a seeded choice is reproducible
    assert syn.of("qwxzv") == ()
    wn = open_wordnet(None)
    assert wn.synset("dog.n.01").lexname() == "noun.animal"  # the generated lexnames are in order


def test_the_folder_comes_from_the_option_or_the_environment(tmp_path, monkeypatch):
    assert "glad" in Synonyms(DEFAULT_DIR).of("happy")
    monkeypatch.setenv("CORPUSMILL_WORDNET", str(tmp_path / "elsewhere"))
    with pytest.raises(WordNetMissing, match="elsewhere"):
        check_wordnet()


def test_missing_wordnet_says_how_to_install_it(tmp_path):
    with pytest.raises(WordNetMissing) as err:
        check_wordnet(tmp_path / "empty")
    msg = str(err.value)
    assert "data.noun" in msg and "make wordnet-data" in msg and "apt-get install wordnet-base" in msg
