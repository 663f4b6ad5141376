"""PII masking speed and recall on real text: Debian's fortunes, as they are (a few real e-mail
and IP addresses in IRC logs and signatures), and with realistic PII of every type written
into 10% of the rows.

Our ``pii`` stage (an RE2 pre-filter in Arrow picks the rows that go through the Python
patterns and checks) against the same patterns without the pre-filter (every row in Python),
in the same process on the same batches:

* rows/s of each, and the ratio;
* finds per type on the fortunes as they are;
* recall per type on the written-in values (the value is gone from the text and its type was
  counted for the row).

    python bench/bench_pii.py [--quick]
"""

from __future__ import annotations

import argparse
import random
import string
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyarrow as pa  # noqa: E402

from bench.common import fortunes, save_result  # noqa: E402
from corpusmill.dataprep.pii import MASK_ORDER, Allowlist, Pii, PiiAllow, PiiConfig, luhn_ok  # noqa: E402
from corpusmill.stage import BatchInfo, RunInfo  # noqa: E402

BATCH = 8192
KEPT = Allowlist(PiiAllow())


# ----------------------------------------------------------------------------- realistic values


def card(rng: random.Random) -> str:
    prefix = rng.choice(["4", "51", "52", "55", "2221", "34", "37", "6011"])
    length = 15 if prefix in ("34", "37") else 16
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    digits = next(body + d for d in string.digits if luhn_ok(body + d))
    if length == 15:
        return rng.choice([digits, f"{digits[:4]} {digits[4:10]} {digits[10:]}"])
    sep = rng.choice(["", " ", "-"])
    return sep.join(digits[i:i + 4] for i in range(0, 16, 4))


def iban(rng: random.Random) -> str:
    country, length = rng.choice([("DE", 22), ("GB", 22), ("FR", 27), ("NL", 18), ("ES", 24), ("PL", 28)])
    if country == "GB":
        bban = "".join(rng.choice(string.ascii_uppercase) for _ in range(4))
        bban += "".join(rng.choice(string.digits) for _ in range(14))
    elif country == "NL":
        bban = "".join(rng.choice(string.ascii_uppercase) for _ in range(4))
        bban += "".join(rng.choice(string.digits) for _ in range(10))
    else:
        bban = "".join(rng.choice(string.digits) for _ in range(length - 4))
    check = 98 - int("".join(str(int(c, 36)) for c in bban + country + "00")) % 97
    value = f"{country}{check:02d}{bban}"
    return " ".join(value[i:i + 4] for i in range(0, len(value), 4)) if rng.random() < 0.5 else value


def phone(rng: random.Random) -> str:
    d = lambda n: "".join(rng.choice(string.digits) for _ in range(n))  # noqa: E731
    nxx = lambda: rng.choice("23456789") + d(2)  # noqa: E731
    return rng.choice([
        f"+49 30 {d(7)}", f"+44 20 {d(4)} {d(4)}", f"+1 ({nxx()}) {nxx()}-{d(4)}", f"+48 {d(3)} {d(3)} {d(3)}",
        f"({nxx()}) {nxx()}-{d(4)}", f"{nxx()}-{nxx()}-{d(4)}", f"030 {d(7)}", f"0{rng.choice('67')} {d(2)} {d(2)} {d(2)} {d(2)}",
        f"0049 89 {d(6)}", f"+7 495 {d(3)}-{d(2)}-{d(2)}",
    ])


def ip(rng: random.Random) -> str:
    """A public address: the stage keeps private, documentation and resolver addresses (its allowlists)."""
    while True:
        if rng.random() < 0.7:
            value = ".".join(str(rng.randrange(1, 255)) for _ in range(4))
        else:
            value = "2a02:8109:" + ":".join(f"{rng.randrange(65536):x}" for _ in range(3)) + "::" + f"{rng.randrange(1, 65536):x}"
        if KEPT.reason("ip_address", value) is None:
            return value


def email(rng: random.Random) -> str:
    user = rng.choice(["anna.nowak", "j.smith", "m_mueller", "pedro", "ivan.petrov82", "lucia+news"])
    return f"{user}@{rng.choice(['gmail.com', 'mail.example.de', 'uni-koeln.de', 'firma.pl', 'correo.es'])}"


def secret(rng: random.Random) -> str:
    alnum = string.ascii_letters + string.digits
    s = lambda n: "".join(rng.choice(alnum) for _ in range(n))  # noqa: E731
    return rng.choice([
        "AKIA" + "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(16)),
        "ghp_" + s(36), "xoxb-" + "".join(rng.choice(string.digits) for _ in range(12)) + "-" + s(24),
        "sk_live_" + s(24), "sk-proj-" + s(40), f"Bearer {s(32)}", f"api_key={s(20)}",
    ])


MAKERS = {"email": email, "phone": phone, "ip_address": ip, "credit_card": card, "iban": iban, "secret": secret}
TEMPLATES = ["{text} Contact: {value}.", "{value} wrote: {text}", "{text}\n({value})"]


def write_in(texts: list[str], share: float, seed: int = 0) -> tuple[list[str], dict[int, tuple[str, str]]]:
    """Texts with one realistic value written into ``share`` of them; {row: (type, value)}."""
    rng = random.Random(seed)
    out, planted = list(texts), {}
    for i in rng.sample(range(len(texts)), int(len(texts) * share)):
        kind = rng.choice(list(MAKERS))
        value = MAKERS[kind](rng)
        out[i] = rng.choice(TEMPLATES).format(text=texts[i], value=value)
        planted[i] = (kind, value)
    return out, planted


# ----------------------------------------------------------------------------- runs


def run_stage(stage: Pii, texts: list[str], prefilter: bool) -> tuple[list[str], list[int], Counter, float]:
    """Masked texts, pii_count per row, finds per type, seconds."""
    if not prefilter:
        stage.scanner.prefilter = r"(?s)."  # every non-empty row goes through the Python pass
    masked, counts, found, seconds = [], [], Counter(), 0.0
    for start in range(0, len(texts), BATCH):
        chunk = texts[start:start + BATCH]
        batch = pa.table({"id": [str(i) for i in range(len(chunk))], "text": chunk})
        t0 = time.perf_counter()
        out = stage.process(batch, BatchInfo(0, start))
        seconds += time.perf_counter() - t0
        masked += out.kept.column("text").to_pylist()
        counts += out.kept.column("pii_count").to_pylist()
        found.update({k: v for k, v in out.counters.items() if k in MASK_ORDER})
    return masked, counts, found, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10,000 fortunes instead of all")
    args = ap.parse_args()
    texts = [r["text"] for r in fortunes()]
    if args.quick:
        texts = random.Random(0).sample(texts, 10_000)
    planted_texts, planted = write_in(texts, 0.10)
    print(f"{len(texts):,} fortunes; {len(planted):,} with a written-in value")

    rows = {}
    for name, data in (("fortunes as they are", texts), ("10% with written-in PII", planted_texts)):
        ours = run_stage(Pii(PiiConfig(), name="pii", run=RunInfo("bench", 0)), data, prefilter=True)
        base = run_stage(Pii(PiiConfig(), name="pii", run=RunInfo("bench", 0)), data, prefilter=False)
        assert ours[0] == base[0], "the pre-filter changed the result"
        rows[name] = {"rows": len(data), "ours_rows_per_s": len(data) / ours[3], "baseline_rows_per_s": len(data) / base[3],
                      "found": dict(ours[2]), "rows_with_pii": sum(1 for c in ours[1] if c)}
        if data is planted_texts:
            masked = ours[0]

    # recall: the written-in value is gone from the text and its type was found in the row
    scanner = Pii(PiiConfig(), name="pii", run=RunInfo("bench", 0)).scanner
    per_type: dict[str, list[bool]] = {}
    for i, (kind, value) in planted.items():
        _, found = scanner.scan(planted_texts[i])  # which types the patterns find in the row
        text = masked[i]  # what the stage wrote (one placeholder per value, wherever the value occurs)
        secret_part = value.removeprefix("Bearer ").removeprefix("api_key=")
        per_type.setdefault(kind, []).append(secret_part not in text and found[kind] > 0)
    recall = {k: sum(v) / len(v) for k, v in sorted(per_type.items())}

    print(f"\n{'data':<26}{'rows/s (ours)':>15}{'rows/s (no pre-filter)':>24}{'ratio':>8}{'rows with PII':>15}")
    for name, r in rows.items():
        print(f"{name:<26}{r['ours_rows_per_s']:>15,.0f}{r['baseline_rows_per_s']:>24,.0f}"
              f"{r['ours_rows_per_s'] / r['baseline_rows_per_s']:>7.1f}x{r['rows_with_pii']:>15,}")
    print("\nFinds per type")
    print(f"{'type':<14}{'fortunes':>10}{'+ written-in':>14}{'written in':>12}{'recall %':>10}")
    written = Counter(kind for kind, _ in planted.values())
    for kind in MASK_ORDER:
        print(f"{kind:<14}{rows['fortunes as they are']['found'].get(kind, 0):>10,}"
              f"{rows['10% with written-in PII']['found'].get(kind, 0):>14,}{written[kind]:>12,}{100 * recall[kind]:>10.1f}")
    save_result("pii", {"quick": args.quick, "runs": rows, "written_in": dict(written), "recall": recall})


if __name__ == "__main__":
    main()
