"""``card.md``: the version as a Hugging Face dataset card.

A YAML header the Hub reads (license, languages, size category, task, and ``configs`` pointing at
the version's Parquet files, so the folder loads as it is), then the provenance: inputs with
checksums, licenses and sources, the pipeline, the counts, and the known limitations.
"""

from __future__ import annotations

import yaml

from corpusmill import schema as S
from corpusmill.report.dataset import mix_line
from corpusmill.report.facts import VersionFacts

#: the Hub's size_categories, upper bounds exclusive
SIZE_CATEGORIES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]
#: a language is listed in the header when it holds at least this share of the kept rows
MIN_LANGUAGE_SHARE = 0.01


def size_category(n: int) -> str:
    return next((c for bound, c in SIZE_CATEGORIES if n < bound), "n>1B")


def input_licenses(manifest: dict) -> list[tuple[str, str | None]]:
    """(input path, license) per input: its own ``license:``, else the pipeline's, else None."""
    default = manifest.get("config", {}).get("license")
    return [(inp["path"], inp.get("license") or default) for inp in manifest["inputs"]]


def license_warnings(manifest: dict) -> list[str]:
    return [f"input '{path}' has no license: set 'license:' on the input (or for the whole pipeline) before "
            "sharing this dataset" for path, lic in input_licenses(manifest) if not lic]


def card_license(manifest: dict) -> tuple[str, list[str]]:
    """The header's license: the pipeline's, else the one all inputs share, else 'other' (several)
    or 'unknown' (any input without one); with the per-input licenses for the text."""
    lic = manifest.get("config", {}).get("license")
    per = input_licenses(manifest)
    found = sorted({x for _, x in per if x})
    if lic:
        return lic, found
    if any(x is None for _, x in per):
        return "unknown", found
    return (found[0] if len(found) == 1 else "other"), found


def languages(facts: VersionFacts) -> list[str]:
    if not facts.languages:
        return []
    kept = facts.languages["kept"]
    total = sum(kept.values()) or 1
    return sorted(k for k, n in kept.items() if n / total >= MIN_LANGUAGE_SHARE and k not in ("und", "(none)"))


def task(manifest: dict) -> tuple[list[str], list[str]]:
    """(task_categories, task_ids) from the columns the rows have."""
    cols = {c["name"] for c in manifest["schema"]}
    if S.LABEL in cols:
        return ["text-classification"], ["multi-class-classification"]
    if S.MESSAGES in cols or S.PROMPT in cols:
        return ["text-generation"], ["dialogue-modeling"] if S.MESSAGES in cols else []
    return ["text-generation"], ["language-modeling"]


def render(manifest: dict, stats: dict, facts: VersionFacts) -> str:
    m = manifest
    lic, found = card_license(m)
    tasks, task_ids = task(m)
    header: dict = {"pretty_name": m["dataset"], "license": lic}
    if lic == "other" and found:
        header["license_name"] = "mixed"
        header["license_details"] = "; ".join(found)
    langs = languages(facts)
    if langs:
        header["language"] = langs
    header["size_categories"] = [size_category(m["counts"]["kept"])]
    header["task_categories"] = tasks
    if task_ids:
        header["task_ids"] = task_ids
    header["tags"] = ["corpusmill"]
    header["configs"] = [{"config_name": "default", "data_files": [
        {"split": s, "path": f"data/{s}-*.parquet"} for s, n in m["splits"].items() if n]}]
    desc = m.get("config", {}).get("description")
    c = m["counts"]
    rejected = sum(sum(r.values()) for r in c["rejected"].values())
    out = ["---", yaml.safe_dump(header, sort_keys=False, allow_unicode=True).rstrip(), "---", "",
           f"# Dataset card for {m['dataset']}", "",
           f"Version `{m['dataset']}@{m['version']}`" + (f", derived from `{m['parent']}`" if m.get("parent") else "")
           + f", built by corpusmill {m['code_version']} with seed {m['seed']}.", "",
           "## Dataset description", "", desc or "_No description: set `description:` in the pipeline file._", ""]
    out += ["## Dataset structure", "", "| split | rows |", "|---|---:|"]
    out += [f"| {s} | {n:,} |" for s, n in m["splits"].items()]
    out += ["", "Columns: " + ", ".join(f"`{col['name']}` ({col['type']})" for col in m["schema"]) + ".", ""]
    if m.get("label_counts"):
        names = sorted({y for cnt in m["label_counts"].values() for y in cnt})
        out += ["| label | " + " | ".join(m["label_counts"]) + " |", "|---|" + "---:|" * len(m["label_counts"])]
        out += [f"| {y or '(none)'} | " + " | ".join(f"{m['label_counts'][s].get(y, 0):,}" for s in m["label_counts"])
                + " |" for y in names]
        out.append("")
    if facts.languages:
        kept = facts.languages["kept"]
        total = sum(kept.values()) or 1
        top = sorted(kept.items(), key=lambda kv: -kv[1])[:12]
        out += ["Languages (detected, kept rows): " + ", ".join(f"{k} {n / total:.1%}" for k, n in top) + ".", ""]
    out += ["## Source data", "", "| input | file | bytes | sha256 | license | source |", "|---|---|---:|---|---|---|"]
    default = m.get("config", {}).get("license")
    for inp in m["inputs"]:
        for f in inp["files"]:
            out.append(f"| {_md(inp['path'])} | {_md(f['name'])} | {f['bytes']:,} | `{f['sha256']}` | "
                       f"{_md(inp.get('license') or default or '**unknown**')} | {_md(inp.get('source') or '-')} |")
    out += ["", "## Processing", "", f"{c['input']:,} rows read, {c['kept']:,} kept, {rejected:,} rejected. "
            "Every rejected row is stored with its stage and reason in the version's `rejects/` folder.", "",
            "| stage | in | kept | rejected by reason |", "|---|---:|---:|---|"]
    for st in m["stages"]:
        reasons = ", ".join(f"{r} {n:,}" for r, n in sorted(st["rejected"].items(), key=lambda kv: -kv[1])) or "-"
        out.append(f"| {st['name']} | {st['in']:,} | {st['kept']:,} | {reasons} |")
    if facts.mix:
        out += ["", "Mixing (groups before and after each mix step are in `report.html`):", ""]
        out += [f"- {_md(mix_line(step))}." for step in facts.mix]
    out += ["", "Pipeline steps, as configured:", "", "```yaml",
            yaml.safe_dump({"steps": m["config"].get("steps", [])}, sort_keys=False, allow_unicode=True).rstrip(),
            "```", ""]
    out += ["## Known limitations", ""] + [f"- {x}" for x in limitations(m, facts)] + [""]
    out += ["See `report.html` next to this card for plots of every stage.", ""]
    return "\n".join(out)


def limitations(m: dict, facts: VersionFacts) -> list[str]:
    out = [w[0].upper() + w[1:] + "." for w in license_warnings(m)]
    kinds = {next(iter(s)) for s in m["config"].get("steps", [])}
    if "language" not in kinds:
        out.append("Languages were not detected (no language step); the header lists none.")
    else:
        out.append("Languages are detected per row by a statistical model: short or mixed texts can be wrong or 'und'.")
    if "dedup" not in kinds:
        out.append("Not deduplicated: repeated texts may remain.")
    elif not any(isinstance(s.get("dedup"), dict) and s["dedup"].get("near") for s in m["config"].get("steps", [])):
        out.append("Exact duplicates only: near duplicates (re-wrapped, lightly edited) may remain.")
    if len(m["splits"]) > 1 and facts.leakage:
        off = sum(v for i, row in enumerate(facts.leakage["matrix"]) for j, v in enumerate(row) if i != j)
        if off:
            out.append(f"{off:,} rows share their normalised text with a row of another split (see the leakage matrix).")
    if "pii" not in kinds:
        out.append("No PII masking step ran: e-mail addresses, phone numbers and the like may be present.")
    if "decontaminate" not in kinds:
        out.append("Not checked against public benchmarks (no decontaminate step).")
    if "quality" in kinds:
        out.append("Quality rules are heuristics published for web text; their thresholds may not suit this corpus.")
    return out


def _md(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")
