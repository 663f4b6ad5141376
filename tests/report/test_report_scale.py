"""Reports and ``datasets show`` at scale: a version with 300 labels, measured in headless Chromium.

The page is opened with a measuring script added (the report itself carries none; its policy
forbids scripts, so the test's copy drops that one meta tag). The script records the page
height, every SVG text element whose box leaves its SVG's viewBox, and every element whose
content is wider than its box, into the DOM that ``--dump-dom`` prints."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from corpusmill.cli import main
from tests.conftest import write_jsonl
from tests.report.chromium import chromium

LABELS = 300
WORDS = ("backup disk password email invoice card app settings dashboard login update error export csv "
         "shipping refund charger account billing report server network printer cable screen battery").split()

MEASURE = """<script>
addEventListener('load', () => {
  const out = {height: document.documentElement.scrollHeight, width: document.documentElement.scrollWidth,
               client: document.documentElement.clientWidth, texts: 0, outside: [], wide: []};
  for (const svg of document.querySelectorAll('svg')) {
    const vb = svg.viewBox.baseVal;
    for (const t of svg.querySelectorAll('text')) {
      out.texts++;
      const b = t.getBBox(), m = t.getCTM(), s = svg.getCTM();
      const p = svg.createSVGPoint();
      const corners = [[b.x, b.y], [b.x + b.width, b.y], [b.x, b.y + b.height], [b.x + b.width, b.y + b.height]]
        .map(([x, y]) => { p.x = x; p.y = y; return p.matrixTransform(s.inverse().multiply(m)); });
      const xs = corners.map(c => c.x), ys = corners.map(c => c.y);
      if (Math.min(...xs) < vb.x - 0.5 || Math.max(...xs) > vb.x + vb.width + 0.5 ||
          Math.min(...ys) < vb.y - 0.5 || Math.max(...ys) > vb.y + vb.height + 0.5)
        out.outside.push([svg.getAttribute('aria-label'), t.textContent, Math.min(...xs), Math.max(...xs)]);
    }
  }
  for (const el of document.body.querySelectorAll('*')) {
    if (el.closest('svg') || el.closest('details:not([open])')) continue;
    if (el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0 && getComputedStyle(el).overflowX !== 'auto')
      out.wide.push([el.tagName, el.className, el.scrollWidth, el.clientWidth]);
  }
  const pre = document.createElement('pre');
  pre.id = 'measured';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def measure(page, tmp_path, width: int = 1100) -> dict:
    """Open ``page`` in headless Chromium at ``width`` CSS pixels; return what MEASURE found."""
    html = page.read_text(encoding="utf-8")
    html = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html, count=1)
    probe = tmp_path / "measured.html"
    probe.write_text(html.replace("</body>", MEASURE + "</body>", 1), encoding="utf-8")
    cmd = [chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--window-size={width},1000",
           "--virtual-time-budget=5000", "--dump-dom", probe.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    found = re.search(r'<pre id="measured">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"the measuring script did not run (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<")
                      .replace("&gt;", ">"))


def label_rows() -> list[dict]:
    """Two to six rows for each of 300 labels (some names long), distinct texts of 8-14 words; a
    near copy of one row in 20 labels, and a two-word row in 10 (rejected by the word count rule)."""
    import random

    rng = random.Random(3)
    rows = []
    for k in range(LABELS):
        label = f"category-{k:03d}" + ("-with-a-rather-long-descriptive-name" if k % 37 == 0 else "")
        for j in range(2 + k % 5):
            words = rng.choices(WORDS, k=rng.randint(10, 14))
            rows.append({"id": f"r{k}-{j}", "text": f"Ticket {k * 10 + j}: " + " ".join(words) + ".", "label": label})
        if k % 15 == 0:
            rows.append({**rows[-1], "id": f"near{k}", "text": rows[-1]["text"].replace(".", " again.")})
        if k % 30 == 1:
            rows.append({"id": f"short{k}", "text": "thanks again", "label": label})
    return rows


@pytest.fixture
def many_labels(tmp_path, run):
    write_jsonl(tmp_path / "raw" / "labels.jsonl", label_rows())
    return run({
        "dataset": "many",
        "inputs": [{"path": "raw/labels.jsonl", "id_field": "id", "label_field": "label", "license": "cc0-1.0"}],
        "steps": [{"clean": {}},
                  {"quality": {"preset": "annotate", "rules": {"gopher_word_count": {"action": "reject", "min": 3}}}},
                  {"dedup": {"exact": True, "near": {"threshold": 0.8}}},
                  {"split": {"ratios": {"train": 0.8, "validation": 0.1, "test": 0.1}, "stratify": "label"}}],
    })


def test_a_report_with_300_labels_stays_short_and_no_text_leaves_its_box(many_labels, tmp_path):
    """The page a 300-label version gets: the 12 most frequent labels and one 'others' part, the
    full table folded; measured in Chromium at 1100 px: height within a bound (14,758 px before
    this change, 5,125 after), no SVG text outside its viewBox, nothing wider than its box."""
    m = many_labels.manifest
    assert sum(len(c) for c in m["label_counts"].values()) > LABELS  # the labels spread over the splits
    html = (many_labels.version.path / "report.html").read_text(encoding="utf-8")
    assert "288 other labels" in html and "<summary>all 300 labels, rows per split" in html
    folded = html.split("<summary>all 300 labels", 1)[1].split("</details>", 1)[0]
    assert folded.count("<tr>") == 1 + LABELS
    assert "category-000-with-a-rather-long-descriptive-name" in html
    measured = measure(many_labels.version.path / "report.html", tmp_path)
    assert measured["texts"] > 100
    assert measured["outside"] == [], measured["outside"][:10]
    assert measured["wide"] == [], measured["wide"][:10]
    assert measured["width"] <= measured["client"]
    assert measured["height"] < 6000, measured["height"]


def test_every_stage_report_keeps_its_text_inside_its_boxes(tmp_path, run):
    """The ticket corpus's report (every stage, rule bounds on signal plots, long counter names)."""
    from tests.report.corpus import every_stage_pipeline, write_corpus

    write_corpus(tmp_path)
    r = run(every_stage_pipeline())
    html = (r.version.path / "report.html").read_text(encoding="utf-8")
    # bar labels whole: every counter under 'What stages counted' is named in full
    for st in r.manifest["stages"]:
        for k, v in st["counters"].items():
            if isinstance(v, int) and not isinstance(v, bool) and v and not k.endswith("_flagged") \
                    and not k.startswith(("lang_", "rows_")):
                assert f">{st['name']}: {k}</text>" in html, k
    measured = measure(r.version.path / "report.html", tmp_path)
    assert measured["outside"] == [] and measured["wide"] == [], (measured["outside"][:10], measured["wide"][:10])


def test_signals_are_a_grid_of_small_plots_with_round_ticks_and_constant_ones_named(many_labels):
    html = (many_labels.version.path / "report.html").read_text(encoding="utf-8")
    grid = html.split('<div class="grid">', 1)[1].split("</div>", 1)[0]
    plotted = re.findall(r"<figcaption>([^<]+)</figcaption>", grid)
    assert plotted and len(plotted) == grid.count("<svg")
    line = re.search(r"(\d+) signal column\(s\) hold one value on every row and are not plotted: ([^<]+)\.</p>", html)
    assert line, "constant signals are named"
    constant = dict(item.split(" = ") for item in line.group(2).split(", "))
    assert int(line.group(1)) == len(constant) and not set(constant) & set(plotted)
    table = many_labels.version.read_split("train")
    for col, value in constant.items():
        assert set(table.column(col).to_pylist()) == {float(value)}, col
    # tick labels are round numbers: at most 4 significant digits, no long decimals
    for svg in re.findall(r"<svg.*?</svg>", grid, re.S):
        for tick in re.findall(r'font-size="10" fill="#222">([-0-9.,k]+)</text>', svg):
            digits = tick.replace("-", "").replace(",", "").replace(".", "").replace("k", "").lstrip("0")
            assert len(digits) <= 4, tick


def test_round_edges_are_round_and_cover_the_values():
    from corpusmill.report.facts import round_edges

    assert round_edges(0.0123, 0.4391) == [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45]
    edges = round_edges(3, 997)
    assert edges[0] <= 3 and edges[-1] > 997 and edges[1] - edges[0] == 50
    for lo, hi in ((-1.7, 2.3), (0.5, 0.5000001), (120, 4000)):
        e = round_edges(lo, hi)
        assert e[0] <= lo and e[-1] > hi and len(e) <= 23


def test_s_curve_explains_members_left_of_the_threshold():
    """A near duplicate that joined its cluster through a third row sits left of the threshold at
    its similarity to the kept row: drawn apart, counted and explained."""
    from corpusmill.report.dataset import _dedup
    from corpusmill.report.facts import VersionFacts
    from corpusmill.report.page import Page

    lsh = {"bands": 16, "rows": 8, "threshold": 0.8, "miss_rate_at_threshold": 0.053, "num_perm": 128}
    manifest = {"stages": [{"name": "dedup", "counters": {"lsh": lsh}, "rejected": {"near_duplicate": 3}}]}
    facts = VersionFacts(near_similarities=[0.91, 0.85, 0.667])
    page = Page("t")
    _dedup(page, manifest, facts)
    html = page.render()
    assert "rejected near duplicates (2)" in html and "joined through another row (1)" in html
    assert "1 of them sit left of the threshold" in html and "A~B and B~C put C with A" in html
    page = Page("t")
    _dedup(page, manifest, VersionFacts(near_similarities=[0.91]))
    assert "joined through another row" not in page.render()


def test_datasets_show_with_300_labels_fits_a_terminal(many_labels, tmp_path, capsys):
    ref, store = many_labels.version.ref, str(tmp_path / "store")
    assert main(["datasets", "show", ref, "--store", store]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 120  # 304 columns before
    assert "labels: the 12 most frequent of 300" in out and re.search(r"288 others\s+│", out)
    assert f"datasets show {ref} --labels 300" in out
    from corpusmill.report.dataset import top_labels

    counts = many_labels.manifest["label_counts"]
    shown, rest = top_labels(counts)
    assert len(shown) == 12 and len(rest) == 288
    for y in shown:  # one row per label: its count in each split, in the manifest's split order
        cells = r"\s+│\s+".join(f"{counts[s].get(y, 0):,}" for s in counts)
        assert re.search(rf"│ {y}\s+│\s+{cells}\s+│", out), y
    assert main(["datasets", "show", ref, "--store", store, "--labels", "300"]) == 0
    full = capsys.readouterr().out
    assert "labels (300)" in full and "others" not in full
    assert all(f"category-{k:03d}" in full for k in range(LABELS))
    assert main(["datasets", "show", ref, "--store", store, "--json"]) == 0
    assert len({y for c in json.loads(capsys.readouterr().out)["label_counts"].values() for y in c}) == LABELS
    with pytest.raises(SystemExit):
        main(["datasets", "show", ref, "--store", store, "--labels", "0"])
    assert "--labels" in capsys.readouterr().err


def test_one_chart_kit_draws_the_training_figures():
    """train.svg is the report's kit: same ticks, legend and palette; a run's figure parses and
    draws a line per series and a hollow key for pruned trials."""
    import xml.etree.ElementTree as ET

    from corpusmill.report import svg
    from corpusmill.train import svg as train_svg

    assert train_svg.figure is svg.figure and train_svg.Panel is svg.Panel
    loss = svg.Panel("optimizer step", "loss", [svg.Series("train", [1, 2, 3, 4], [2.0, 1.6, 1.41, 1.3]),
                                                 svg.Series("validation", [2, 4], [1.8, 1.5])])
    lr = svg.Panel("lr", "val_loss", [svg.Series("complete", [1e-4, 3e-3], [1.2, 1.1], "dots"),
                                       svg.Series("pruned", [1e-3], [1.9], "hollow")], xscale="log")
    root = ET.fromstring(svg.figure([loss, lr], "a run"))
    ns = "{http://www.w3.org/2000/svg}"
    assert len(list(root.iter(f"{ns}polyline"))) == 2
    texts = [t.text for t in root.iter(f"{ns}text")]
    assert {"a run", "train", "validation", "complete", "pruned", "1e-04", "0.001"} <= set(texts)
    assert any(c.get("fill") == "none" for c in root.iter(f"{ns}circle"))  # the pruned key and dot
    assert svg.fmt_tick(0.1 + 0.2) == "0.3" and svg.fmt_tick(1500) == "1,500" and svg.fmt_tick(0.0854) == "0.0854"


def test_bar_labels_are_whole_and_notes_fit():
    from corpusmill.report import svg

    long = "dedup: near_similarity_estimated_for_rows"
    out = svg.hbar_stack([(long, [("n", 5, svg.KEPT)]), ("x", [("n", 1200, svg.KEPT)])], title="t",
                         note={"x": "1,200 rows and a long note after the bar"})
    assert f">{long}</text>" in out and "…" not in out
    width = float(re.search(r'width="([0-9.]+)"', out).group(1))
    bar_end = max(float(x) + float(w) for x, w in re.findall(r'<rect x="([0-9.]+)" y="[0-9.]+" width="([0-9.]+)"', out))
    assert bar_end + 4 + svg.text_width("1,200 rows and a long note after the bar", 11) <= width
