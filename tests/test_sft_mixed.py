"""Plain text, single turns and conversations in one pipeline: every stage on its SFT defaults."""

import json


def test_text_alpaca_and_sharegpt_inputs_through_every_stage(tmp_path, run):
    (tmp_path / "notes.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in [
        "The ls command lists the files of a directory, sorted by name unless told otherwise.",
        "Mail the results to jane.roe@gmail.com before Friday, as agreed in the meeting.",
    ]))
    (tmp_path / "alpaca.json").write_text(json.dumps([
        {"instruction": "What does the `cp` command do?", "input": "",
         "output": "<p>It copies files and directories.</p>"},
        {"instruction": "Write to me at", "input": "john.smith@gmail.com",
         "output": "I will write to john.smith@gmail.com about the copy of the files."},
        {"instruction": "What does the `rm` command do?", "input": "", "output": "<nooutput>"},
    ]))
    (tmp_path / "sharegpt.json").write_text(json.dumps([{"conversations": [
        {"from": "human", "value": "What does the `mv` command do?"},
        {"from": "gpt", "value": "It moves or renames files and directories."},
        {"from": "human", "value": "Call me at +44 20 7946 1234 if it fails."},
        {"from": "gpt", "value": "Noted: +44 20 7946 1234 gets the report; mv prints its errors on stderr."},
    ]}]))
    result = run({"dataset": "mixed", "inputs": [{"path": "notes.jsonl"}, {"path": "alpaca.json"},
                                                   {"path": "sharegpt.json"}],
                  "steps": [{"clean": {}}, {"language": {}}, {"pii": {}}, {"quality": {}},
                            {"dedup": {"near": True}}, {"split": {}}]}, workers=2)
    m = result.manifest
    rejected = {stage: dict(r) for stage, r in m["counts"]["rejected"].items()}
    assert m["counts"]["input"] == 6
    assert rejected.get("quality") == {"placeholder_response": 1}  # the sft preset: '<nooutput>'
    rows = {r["id"]: r for s in result.version.splits() for r in result.version.read_split(s).to_pylist()}
    by_kind = {("messages" if r["messages"] else "prompt" if r["prompt"] else "text"): r for r in rows.values()}
    cp = next(r for r in rows.values() if r["prompt"] and "cp" in r["prompt"])
    assert cp["response"] == "It copies files and directories."  # markup cleaned in the trained field
    assert cp["text"] == cp["prompt"] + "\n\n" + cp["response"]  # text derived from the trained fields
    mail = next(r for r in rows.values() if r["prompt"] and r["prompt"].startswith("Write to me"))
    assert "gmail" not in mail["prompt"] and "gmail" not in mail["response"] and "gmail" not in mail["text"]
    chat = by_kind["messages"]["messages"]
    assert "7946" not in chat[2]["content"] and "7946" not in chat[3]["content"]
    masked = [w for w in chat[2]["content"].split() if w.startswith("<")]
    assert masked and masked[0] in chat[3]["content"]  # one value, one placeholder in every turn
    plain = [r for r in rows.values() if not r["prompt"] and not r["messages"]]
    assert any("<EMAIL" in r["text"] for r in plain)  # plain rows: their text is the data
    assert m["counts"]["kept"] + sum(sum(r.values()) for r in rejected.values()) == 6
