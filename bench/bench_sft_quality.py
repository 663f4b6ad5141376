"""The quality stage's ``sft`` preset on real instruction rows with planted bad rows.

Real rows: bench/sft_data.py (Debian man pages in English, German, French and Spanish, ~34k
Alpaca-style rows; and the same rows grouped into ~11k ShareGPT-style conversations). Bad rows are
planted from real rows with a fixed seed, one kind per rule:

* empty: the response blanked (empty or whitespace);
* placeholder: the response replaced by a placeholder ('<nooutput>', 'N/A', '(none)', 'TODO'...);
* refusal: a refusal instead of the answer, or an AI disclaimer in the middle of the real answer;
* echo: the prompt as the response (case and spacing varied);
* loop: one sentence of the real answer repeated 4 to 12 times at its end, or one line 5 to 8 times;
* truncated: a real answer of at least 30 words cut at a word between 40% and 90% of its words
  (never right after a full stop: a cut at a token limit lands anywhere);
* missing assistant turn (conversations): the assistant turns dropped, or emptied.

The stage runs directly on Arrow batches (no store). Printed: the share of real rows kept (target
>= 97%), the share of planted rows rejected (target >= 95%) and by the planted kind's own rule, per
rule reject shares, a sample of the real rows rejected (to judge whether the rule was right), and
the fineweb preset's reject share on the same real rows.

    python bench/bench_sft_quality.py
"""

from __future__ import annotations

import random
import re
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pyarrow as pa  # noqa: E402

from bench.common import save_result  # noqa: E402
from corpusmill import schema as S  # noqa: E402
from corpusmill.dataprep.quality import Quality, QualityConfig  # noqa: E402
from corpusmill.sft import derive_text  # noqa: E402
from corpusmill.stage import BatchInfo, RunInfo  # noqa: E402
from sft_data import instruction_rows, sharegpt_conversations  # noqa: E402

PER_KIND = 300
BATCH = 8192
PLACEHOLDERS = ["<nooutput>", "N/A", "n/a.", "...", "TODO", "-", "None", "null", "(none)", "[insert answer here]",
                "<your answer here>", "No output.", "TBD", "  <noinput>  ", "Not applicable.", "…"]
REFUSALS = ["I'm sorry, but I cannot help with that.", "As an AI language model, I cannot provide that information.",
            "I cannot fulfill this request.", "I am unable to answer questions about this topic.",
            "I’m sorry, but I can’t assist with that request.", "Sorry, but I can't provide help with that."]
DISCLAIMERS = [" However, as an AI language model, I cannot guarantee that this is accurate.",
               " As an AI language model, I do not have personal experience with this tool.",
               " Please note that I am not able to provide further assistance on this."]
KIND_RULE = {"empty": "empty_response", "placeholder": "placeholder_response", "refusal": "refusal",
             "echo": "response_equals_prompt", "loop": "repetition_loop", "truncated": "truncated_response",
             "missing_turn": "missing_assistant_turn"}


def plant(rows: list[dict], rng: random.Random) -> list[tuple[str, str, str]]:
    """(kind, prompt, response) of the planted single-turn rows, each built from a real row."""
    out = []
    pick = lambda: rng.choice(rows)  # noqa: E731
    for _ in range(PER_KIND):
        out.append(("empty", pick()["prompt"], rng.choice(["", " ", "\n", "\t \n"])))
        out.append(("placeholder", pick()["prompt"], rng.choice(PLACEHOLDERS)))
        r = pick()
        out.append(("refusal", r["prompt"], rng.choice(REFUSALS) if rng.random() < 0.6
                    else r["response"].rstrip() + rng.choice(DISCLAIMERS)))
        r = pick()
        echo = r["prompt"]
        if rng.random() < 0.5:
            echo = rng.choice([echo.lower(), echo.upper(), "  " + echo.replace(" ", "  ") + "\n"])
        out.append(("echo", r["prompt"], echo))
        r = pick()
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", r["response"]) if len(s.split()) >= 3] or [r["response"]]
        if rng.random() < 0.7:
            loop = r["response"].rstrip() + " " + " ".join([rng.choice(sentences)] * rng.randint(4, 12))
        else:
            loop = r["response"].rstrip() + "\n" + "\n".join([rng.choice(sentences)] * rng.randint(5, 8))
        out.append(("loop", r["prompt"], loop))
    long = [r for r in rows if len(r["response"].split()) >= 30]
    while sum(k == "truncated" for k, _, _ in out) < PER_KIND:
        r = rng.choice(long)
        words = r["response"].split(" ")
        cut = rng.randint(int(len(words) * 0.4), int(len(words) * 0.9))
        text = " ".join(words[:cut]).rstrip()
        if text and text[-1] not in ".!?:":
            out.append(("truncated", r["prompt"], text))
    return out


def single_turn_batch(pairs: list[tuple[str, str]]) -> pa.Table:
    n = len(pairs)
    t = pa.Table.from_pydict({
        S.ID: [str(i) for i in range(n)], S.TEXT: [""] * n, S.SYSTEM: [None] * n, S.PROMPT: [p for p, _ in pairs],
        S.RESPONSE: [r for _, r in pairs], S.SOURCE: ["bench"] * n, S.META: [None] * n,
    }, schema=S.record_schema(prompt_response=True))
    return derive_text(t)


def conversation_batch(conversations: list[list[dict]]) -> pa.Table:
    n = len(conversations)
    t = pa.Table.from_pydict({
        S.ID: [str(i) for i in range(n)], S.TEXT: [""] * n,
        S.MESSAGES: [[{**m, "extra": None} for m in c] for c in conversations],
        S.SOURCE: ["bench"] * n, S.META: [None] * n,
    }, schema=S.record_schema(messages=True))
    return derive_text(t)


def judge(batch: pa.Table, **options) -> list[str | None]:
    """The reject reason of every row (None: kept), in row order, batch by batch."""
    stage = Quality(QualityConfig(**options), name="quality", run=RunInfo("bench", 0))
    reasons: list[str | None] = []
    for start in range(0, batch.num_rows, BATCH):
        part = batch.slice(start, BATCH)
        out = stage.process(part, BatchInfo(0, start))
        got = dict(zip(out.rejected.column(S.ID).to_pylist(), out.rejected.column(S.REASON).to_pylist())) \
            if out.rejected is not None else {}
        reasons += [got.get(i) for i in part.column(S.ID).to_pylist()]
    return reasons


def main() -> int:
    rng = random.Random(18)
    rows = instruction_rows()
    planted = plant(rows, rng)
    conversations = [[{"role": {"system": "system", "human": "user", "gpt": "assistant"}[m["from"]], "content": m["value"]}
                      for m in c["conversations"]] for c in sharegpt_conversations(rows)]
    bad_conversations = []
    for _ in range(PER_KIND):
        c = rng.choice(conversations)
        if rng.random() < 0.5:
            bad_conversations.append([m for m in c if m["role"] != "assistant"])
        else:
            bad_conversations.append([{**m, "content": ""} if m["role"] == "assistant" else m for m in c])

    real = judge(single_turn_batch([(r["prompt"], r["response"]) for r in rows]))
    bad = judge(single_turn_batch([(p, r) for _, p, r in planted]))
    real_conv = judge(conversation_batch(conversations))
    bad_conv = judge(conversation_batch(bad_conversations))
    fineweb = judge(single_turn_batch([(r["prompt"], r["response"]) for r in rows]), preset="fineweb")

    kinds = [k for k, _, _ in planted] + ["missing_turn"] * len(bad_conversations)
    bad_all = bad + bad_conv
    n_real = len(real) + len(real_conv)
    kept_real = sum(r is None for r in real) + sum(r is None for r in real_conv)
    result = {
        "real_rows": len(real), "real_conversations": len(real_conv), "planted": len(bad_all),
        "real_kept_share": kept_real / n_real,
        "real_single_turn_kept_share": sum(r is None for r in real) / len(real),
        "real_conversations_kept_share": sum(r is None for r in real_conv) / len(real_conv),
        "planted_rejected_share": sum(r is not None for r in bad_all) / len(bad_all),
        "planted_rejected_by_their_rule_share": sum(r == KIND_RULE[k] for k, r in zip(kinds, bad_all)) / len(bad_all),
        "planted_by_kind": {}, "real_rejects_by_rule": dict(Counter(r for r in real + real_conv if r)),
        "fineweb_real_reject_share": sum(r is not None for r in fineweb) / len(fineweb),
        "fineweb_real_rejects_by_rule": dict(Counter(r for r in fineweb if r).most_common(8)),
    }
    print(f"real rows: {len(real):,} single-turn + {len(real_conv):,} conversations; planted bad rows: {len(bad_all):,}")
    print(f"real rows kept: {kept_real:,} of {n_real:,} = {result['real_kept_share']:.2%} "
          f"(single-turn {result['real_single_turn_kept_share']:.2%}, conversations "
          f"{result['real_conversations_kept_share']:.2%}; target >= 97%)")
    print(f"planted bad rows rejected: {result['planted_rejected_share']:.2%} (target >= 95%); by the planted "
          f"kind's own rule: {result['planted_rejected_by_their_rule_share']:.2%}")
    print("planted kind         rows  rejected  by its rule  other reasons")
    for kind in KIND_RULE:
        got = [r for k, r in zip(kinds, bad_all) if k == kind]
        if not got:
            continue
        rejected = sum(r is not None for r in got) / len(got)
        own = sum(r == KIND_RULE[kind] for r in got) / len(got)
        other = Counter(r for r in got if r and r != KIND_RULE[kind])
        result["planted_by_kind"][kind] = {"rows": len(got), "rejected": rejected, "by_its_rule": own,
                                           "other_reasons": dict(other)}
        print(f"{kind:<18} {len(got):>6}  {rejected:>8.1%}  {own:>11.1%}  {dict(other) or ''}")
    print("real rows rejected per rule (share of all real rows):")
    for rule, n in sorted(result["real_rejects_by_rule"].items(), key=lambda kv: -kv[1]):
        print(f"  {rule:<24} {n:>6,}  {n / n_real:.2%}")
    print("a sample of the real single-turn rows rejected (the end of the response):")
    sample = [(r, rows[i]["response"]) for i, r in enumerate(real) if r]
    for reason, text in random.Random(1).sample(sample, min(12, len(sample))):
        print(f"  [{reason}] ...{text[-110:]!r}")
    print(f"fineweb preset on the same real single-turn rows: {result['fineweb_real_reject_share']:.2%} rejected; "
          f"top reasons {result['fineweb_real_rejects_by_rule']}")
    save_result("sft_quality", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
