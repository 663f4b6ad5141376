"""The mix step in what people read: report.html's Mix section (groups before / after / share /
target, top groups + 'others', a paired bar chart), ``datasets show`` and its ``--json``, and
card.md's line per mix step. The numbers are checked against the rows the version holds and
rejects, not against the stage's own table."""

from __future__ import annotations

import json
import re

from corpusmill.cli import main
from tests.conftest import write_jsonl
from tests.dataprep.test_mix import _pipeline, _rows
from tests.report.test_report_scale import measure

SPLIT = {"split": {"ratios": {"train": 0.8, "validation": 0.1, "test": 0.1}, "near": False}}


def _count(rows, key="label") -> dict:
    out: dict = {}
    for r in rows:
        out[r[key]] = out.get(r[key], 0) + 1
    return out


def _two_mixes(tmp_path, run):
    """split, then a cap of 20 per label, then temperature sampling with repeats."""
    write_jsonl(tmp_path / "rows.jsonl", _rows({"ops": 120, "billing": 30, "app": 10}))
    return run(_pipeline([SPLIT, {"mix": {"max_per": {"label": 20}}},
                          {"mix": {"alpha": {"label": 0.5}, "upsample": True}}]))


def _cells(html: str, group: str) -> list[str]:
    """The cells of the first table row whose first cell is ``group`` after the Mix heading."""
    part = html[html.index('<h2 id="mix">'):]
    row = re.search(r"<tr><td>" + re.escape(group) + r"</td>(.*?)</tr>", part)
    assert row, f"no row {group!r} in the Mix section"
    return re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))


def test_report_has_a_mix_section_with_each_steps_groups_before_and_after(tmp_path, run):
    result = _two_mixes(tmp_path, run)
    v = result.version
    html = (v.path / "report.html").read_text(encoding="utf-8")
    assert '<a href="#mix">Mix</a>' in html
    train = _count(v.read_split("train").to_pylist())
    rejects = v.read_rejects().to_pylist()
    capped = _count([r for r in rejects if r["stage"] == "mix"])
    # the first step: before = its training rows, after = the cap; a cap is no share target
    ops = _cells(html, "ops")  # before, share, after, share, target
    assert int(ops[0].replace(",", "")) == 20 + capped["ops"] and ops[2] == "20" and ops[4] == ""
    assert "mix by label (split train):" in html and f"over_cap {sum(capped.values()):,}" in html
    # the second step: after = the training rows the version holds, repeats included
    second = html[html.index("mix_2: label"):]
    for y, n in train.items():
        row = re.search(r"<tr><td>" + y + r"</td>(.*?)</tr>", second).group(1)
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
        assert int(cells[2]) == n and int(cells[4]) == n  # every target reached (app by repeats)
    repeats = sum(1 for r in v.read_split("train").to_pylist() if r.get("repeat_of"))
    assert repeats > 0 and f"{repeats:,} repeats added" in html
    assert 'aria-label="mix_2 label before and after"' in html


def test_show_prints_the_mix_block_and_json_holds_every_group(tmp_path, run, capsys):
    result = _two_mixes(tmp_path, run)
    ref = f"mixed@{result.version.id}"
    assert main(["datasets", "show", ref, "--store", str(tmp_path / "store")]) == 0
    out = capsys.readouterr().out
    first = result.manifest["stages"][3]["counters"]
    assert f"mix by label (split train): {first['rows_mixed']:,} rows -> {first['rows_out']:,}" in out
    assert "mix_2: label (3 groups)" in out and "mix_2 by label" in out
    assert main(["datasets", "show", ref, "--store", str(tmp_path / "store"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [s["stage"] for s in data["mix"]] == ["mix", "mix_2"]
    groups = {g["group"]: g for g in data["mix"][1]["groups"]["label"]}
    assert {y: g["after"] for y, g in groups.items()} == _count(result.version.read_split("train").to_pylist())
    assert data["mix"][0]["rejected"] == {"over_cap": sum(g["before"] - g["after"] for g in data["mix"][0]["groups"]["label"])}


def test_card_has_one_line_per_mix_step(tmp_path, run):
    result = _two_mixes(tmp_path, run)
    card = (result.version.path / "card.md").read_text(encoding="utf-8")
    lines = [x for x in card.splitlines() if x.startswith("- mix") and " by " in x]
    assert len(lines) == 2
    assert lines[0].startswith("- mix by label (split train): ") and "0 repeats added; over_cap" in lines[0]
    assert lines[1].startswith("- mix_2 by label (split train): 46 rows -> 46, 4 repeats added")


def test_many_groups_fold_into_others_and_no_text_leaves_its_box_in_chromium(tmp_path, run, capsys):
    """40 labels (one with a long name) capped at 3 rows: 12 groups drawn + one 'others' pair, every
    group in a folded table; measured in headless Chromium at 1100 px."""
    sizes = {(f"group-{k:02d}" + ("-with-a-rather-long-descriptive-name-for-the-label-column" if k == 5 else "")):
             4 + k % 7 for k in range(40)}
    write_jsonl(tmp_path / "rows.jsonl", _rows(sizes))
    result = run(_pipeline([{"mix": {"max_per": {"label": 3}, "alpha": {"label": 0.3}, "upsample": True}}]))
    html = (result.version.path / "report.html").read_text(encoding="utf-8")
    assert "28 other groups" in html and "all 40 groups of label" in html
    found = measure(result.version.path / "report.html", tmp_path)
    assert found["outside"] == [] and found["wide"] == []
    assert found["width"] <= found["client"]
    assert main(["datasets", "show", f"mixed@{result.version.id}", "--store", str(tmp_path / "store")]) == 0
    out = capsys.readouterr().out
    assert "mix: label, the 12 biggest of 40 groups" in out and "28 others" in out
