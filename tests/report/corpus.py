"""A small support-ticket corpus and a pipeline that runs every stage over it, for the report tests."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import REAL_TEXTS, write_jsonl

GERMAN = [
    "Die Sicherung ist letzte Nacht wieder fehlgeschlagen, weil die Festplatte voll war.",
    "Bitte setzen Sie mein Passwort zurück, der Link in der E-Mail ist abgelaufen.",
    "Die Rechnung wurde diesen Monat zweimal von meiner Kreditkarte abgebucht.",
    "Die App stürzt jedes Mal ab, wenn ich die Einstellungen auf dem Telefon öffne.",
]
BENCHMARK = [{"question": "The export to CSV drops every row that contains a comma in the title of the report "
                          "when the user downloads it from the dashboard"}]


def ticket_rows() -> list[dict]:
    """Tickets with labels: English and German, exact and near duplicates, a PII address, a
    benchmark copy, a too-short line, an off-domain line and one malformed JSON line."""
    cats = ["ops", "account", "billing", "app", "feature"]
    rows = [{"id": f"en{i}", "text": t, "category": cats[i % 5]} for i, t in enumerate(REAL_TEXTS)]
    rows += [{"id": f"de{i}", "text": t, "category": cats[i % 5]} for i, t in enumerate(GERMAN)]
    rows += [{"id": f"more{i}", "text": f"Ticket {i}: the login page shows an error after the update, "
              f"reported by customer number {1000 + 7 * i} from the {['north', 'south', 'east'][i % 3]} office.",
              "category": cats[i % 5]} for i in range(24)]
    rows += [
        {"id": "dup_exact", "text": REAL_TEXTS[1].upper(), "category": "account"},
        {"id": "dup_near", "text": REAL_TEXTS[5].replace("this morning", "this morning again"), "category": "ops"},
        {"id": "pii", "text": "Please write to jane.doe@example.com about the refund for the broken charger.",
         "category": "billing"},
        {"id": "leak", "text": "Customer says: " + BENCHMARK[0]["question"] + ".", "category": "app"},
        {"id": "short", "text": "ok", "category": "ops"},
        {"id": "french", "text": "Le colis est arrivé avec trois semaines de retard et la boîte était abîmée.",
         "category": "ops"},
        {"id": "offtopic", "text": "My grandmother bakes her apple pie with two cups of sugar and some cinnamon.",
         "category": "feature"},
    ]
    return rows


def write_corpus(root: Path) -> None:
    path = write_jsonl(root / "raw" / "tickets.jsonl", ticket_rows())
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"id": "broken", "text": "unterminated\n')
    write_jsonl(root / "bench" / "quiz.jsonl", BENCHMARK)


def every_stage_pipeline(**extra) -> dict:
    return {
        "dataset": "tickets",
        "description": "Support tickets in English and German, labelled by category.",
        "inputs": [{"path": "raw/tickets.jsonl", "id_field": "id", "label_field": "category",
                    "license": "cc-by-4.0", "source": "written for the corpusmill tests"}],
        "steps": [
            {"clean": {}},
            {"language": {"backend": "py3langid", "keep": ["en", "de"], "keep_und": True}},
            {"pii": {}},
            {"quality": {"preset": "annotate", "rules": {"gopher_word_count": {"action": "reject", "min": 3}}}},
            {"dedup": {"exact": True, "near": {"threshold": 0.6, "ngram": 2}}},
            {"select": {"method": "keywords", "keep": {"min_score": 0.01},
                        "keywords": ["login", "password", "app", "update", "error", "invoice", "card", "backup",
                                     "disk", "subscription", "export", "shipping", "fix", "dashboard", "ticket",
                                     "refund", "charger", "Sicherung", "Passwort", "Rechnung", "App", "CSV",
                                     "Festplatte", "Kreditkarte", "Einstellungen"]}},
            {"decontaminate": {"benchmarks": ["bench/*.jsonl"], "text_field": "question"}},
            {"split": {"ratios": {"train": 0.6, "validation": 0.2, "test": 0.2}, "stratify": "label"}},
        ],
        **extra,
    }
