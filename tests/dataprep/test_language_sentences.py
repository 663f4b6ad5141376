"""The benchmark's sentence set (bench/lang_sentences.py): prose sentences from a man page, code
and fragments left out, and paragraphs left in English in a translated page recognised."""

from __future__ import annotations

from bench.lang_sentences import is_prose, looks_english, page_sentences

PAGE = r""".TH FROB 1 "2024" "frob 1.0"
.SH BEZEICHNUNG
frob \- Dateien umwandeln
.SH ÜBERSICHT
.B frob
[\fB\-v\fR] \fIDATEI\fR ...
.SH BESCHREIBUNG
.B frob
liest jede angegebene Datei und schreibt das Ergebnis in die Standardausgabe. Ohne Datei liest es die Standardeingabe, bis diese endet.
.TP
.B \-v
ausführlich
.PP
.nf
frob \-v /etc/passwd > /tmp/out.txt; echo $? ; cat /tmp/out.txt | wc -l
.fi
.SH "SIEHE AUCH"
cat(1), wc(1)
"""


def test_a_page_gives_its_prose_sentences_only():
    got = page_sentences(PAGE)
    assert got == [
        "frob liest jede angegebene Datei und schreibt das Ergebnis in die Standardausgabe.",
        "Ohne Datei liest es die Standardeingabe, bis diese endet.",
    ]


def test_prose_needs_length_letters_few_code_words_and_an_end():
    assert is_prose("Die Sicherung ist letzte Nacht wieder fehlgeschlagen.")
    assert not is_prose("Zu kurz, um zu zählen.")  # under 40 characters
    assert not is_prose("Die Sicherung ist letzte Nacht wieder fehlgeschlagen")  # no full stop
    assert not is_prose("Mit --output=DATEI und -v schreibt frob(1) nach /tmp/x und $HOME.")
    assert not is_prose("1234 5678 9012 3456 7890 1234 5678 9012 3456 7890.")


def test_untranslated_english_is_recognised():
    english = {"the", "program", "reads", "each", "file", "and", "writes", "result", "to", "standard", "output"}
    assert looks_english("The program reads each file and writes the result to standard output.", "de", english)
    assert not looks_english("Das Programm liest jede Datei und schreibt das Ergebnis.", "de", english)
    # a language in another script: mostly Latin letters is English left in place
    assert looks_english("The program reads each file and writes the result.", "ru", english)
    assert not looks_english("Программа читает каждый файл (file) и пишет результат.", "ru", english)
