"""The ``pii`` stage: personal data and secrets are masked with typed placeholders, or the row is
rejected as ``pii_found``.

What is found, by type (placeholder):

* ``email`` (``<EMAIL>``): ``local@domain.tld``; image names such as ``icon@2x.png`` are not mail.
* ``phone`` (``<PHONE>``): international numbers (``+49 30 1234567``, ``0044 20 7946 0958``,
  ``+1 (555) 123-4567``), North American numbers with separators (``(555) 123-4567``,
  ``555-123-4567``) and national numbers with a trunk 0 and separators (``030 1234567``,
  ``06 12 34 56 78``). A bare run of digits is not a phone number: order numbers, dates and
  amounts survive.
* ``ip_address`` (``<IP_ADDRESS>``): IPv4 (octets 0-255, no leading zeros) and IPv6 (checked by
  :mod:`ipaddress`). A dotted quad right after a version word (``version 1.2.3.4``, ``v1.2.3.4``,
  ``build 10.0.19041.1``, ``release 2.4.1.0``) is a version number, not an address.
* ``credit_card`` (``<CREDIT_CARD>``): 13-19 digits, contiguous or in the groups cards print
  (4-4-4-4, 4-6-5...), starting with an issuer digit 2-6, and passing the Luhn check.
* ``iban`` (``<IBAN>``): country code, check digits and account number of exactly that country's
  length, with a valid ISO 13616 mod-97 checksum, printed contiguous or in groups of four.
* ``secret`` (``<SECRET>``): private key blocks, AWS access key ids and secret keys, GitHub,
  Slack, Stripe, OpenAI/Anthropic-style and Google API keys, JSON web tokens, bearer tokens, and
  values assigned to credential names (``api_key=...``, ``password: ...``) that look like keys
  (letters with digits, or 16+ characters mixing cases). The name or ``Bearer`` word stays; only
  the value is masked.

Speed: one RE2 pre-filter per field (``pc.match_substring_regex``) picks the rows that may hold
any of the enabled types; only those go through the Python-level patterns and checks (Luhn,
mod-97, address parsing). Clean rows never leave Arrow.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator

from corpusmill.stage import BatchInfo, Stage, StageConfig, StageOutput

PiiType = Literal["email", "phone", "ip_address", "credit_card", "iban", "secret"]
PII_TYPES: tuple[str, ...] = ("email", "phone", "ip_address", "credit_card", "iban", "secret")
PLACEHOLDERS = {
    "email": "<EMAIL>", "phone": "<PHONE>", "ip_address": "<IP_ADDRESS>",
    "credit_card": "<CREDIT_CARD>", "iban": "<IBAN>", "secret": "<SECRET>",
}
#: the order in which types are masked: secrets first (they hold digits, dots and @), phone last
#: (its patterns are the loosest, so everything more specific is already a placeholder)
MASK_ORDER = ("secret", "email", "iban", "credit_card", "ip_address", "phone")
COUNT_COLUMN = "pii_count"
REASON = "pii_found"


class PiiConfig(StageConfig):
    """Which personal data to look for, where, and what to do with a row that has some."""

    types: list[PiiType] = Field(
        default_factory=lambda: list(PII_TYPES), min_length=1,
        description="types to find: email, phone, ip_address, credit_card, iban, secret; default all of them",
    )
    action: Literal["mask", "reject"] = Field(
        "mask",
        description="mask: replace each find with its placeholder (<EMAIL>, <PHONE>, ...) and keep the row; "
                    "reject: reject every row with a find as 'pii_found' (text unchanged, types in the detail). "
                    "Default mask: the rest of the text is usually worth keeping",
    )
    fields: list[Literal["text", "prompt", "response"]] = Field(
        default_factory=lambda: ["text"], min_length=1,
        description="string columns scanned; prompt/response must be mapped by the inputs (prompt_field, "
                    "response_field). Counts add up over the fields",
    )

    @field_validator("types", "fields")
    @classmethod
    def _no_repeats(cls, v: list[str]) -> list[str]:
        repeated = sorted({x for x in v if v.count(x) > 1})
        if repeated:
            raise ValueError(f"listed more than once: {', '.join(repeated)}")
        return v


# ----------------------------------------------------------------------------- checks


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a card number (digits only)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


#: ISO 13616 IBAN length per country (SWIFT IBAN registry)
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25,
    "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18,
    "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33,
    "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}


def iban_ok(iban: str) -> bool:
    """Country length and the mod-97 checksum of an IBAN (upper case, no spaces)."""
    if IBAN_LENGTHS.get(iban[:2]) != len(iban):
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


# A dotted quad right after one of these words is a version, build or section number.
_VERSION_CUE = re.compile(
    r"(?i)(?:\b(?:version|ver|v|release|rel|build|revision|rev|firmware|fw|patch|update|kernel"
    r"|section|sect|sec|chapter|paragraph)\.?|§)\s*[:#]?\s*$"
)


def _ipv4_ok(m: re.Match) -> bool:
    before = m.string[max(0, m.start() - 24):m.start()]
    return not _VERSION_CUE.search(before)


def _ipv6_ok(m: re.Match) -> bool:
    cand = m.group(0)
    groups = [g for g in re.split(r"[:.]", cand) if g]
    if len(groups) < 2 or not any(c.isdigit() for c in cand):
        return False
    try:
        ipaddress.IPv6Address(cand)
    except ValueError:
        return False
    return True


#: how card numbers are printed in groups: 16 digits 4-4-4-4, American Express 4-6-5, Diners 4-6-4,
#: 13-digit Visa 4-4-4-1, 19-digit cards 4-4-4-4-3
_CARD_GROUPS = {(4, 4, 4, 4), (4, 6, 5), (4, 6, 4), (4, 4, 4, 1), (4, 4, 4, 4, 3)}
_IBAN_HEAD = re.compile(r"[A-Z]{2}\d{2} ?$")


def _card_ok(m: re.Match) -> bool:
    raw = m.group(0)
    if _IBAN_HEAD.search(m.string, max(0, m.start() - 5), m.start()):
        return False  # the account part of an IBAN whose checksum failed is not a card
    digits = re.sub(r"[ -]", "", raw)
    if not 13 <= len(digits) <= 19 or digits[0] not in "23456" or len(set(digits)) == 1:
        return False
    seps = set(re.findall(r"[ -]", raw))
    if len(seps) > 1:
        return False
    if seps and tuple(len(g) for g in re.split(r"[ -]", raw)) not in _CARD_GROUPS:
        return False
    return luhn_ok(digits)


def _digits(m: re.Match) -> str:
    return re.sub(r"\D", "", m.group(0))


def _international_phone_ok(m: re.Match) -> bool:
    """E.164: at most 15 digits with the country code; fewer than 8 is a short code or a number."""
    digits = _digits(m)
    if m.group(0).startswith("00"):
        digits = digits[2:]
    return 8 <= len(digits) <= 15


def _north_american_phone_ok(m: re.Match) -> bool:
    """NXX-NXX-XXXX: neither the area code nor the exchange starts with 0 or 1."""
    digits = _digits(m)
    return digits[0] not in "01" and digits[3] not in "01"


def _national_phone_ok(m: re.Match) -> bool:
    """A trunk 0 and 9-12 digits in all (030 1234567, 06 12 34 56 78), not one digit repeated."""
    digits = _digits(m)
    return 9 <= len(digits) <= 12 and len(set(digits)) > 2


def _looks_like_a_key(m: re.Match) -> bool:
    """Keys and tokens mix letters with digits, or upper with lower case over 16+ characters;
    words, hyphenated phrases and placeholders do not."""
    v = m.group("value") if "value" in m.re.groupindex else m.group(0)
    if v.startswith("<") or not any(c.isalpha() for c in v):
        return False
    if any(c.isdigit() for c in v):
        return True
    return len(v) >= 16 and any(c.isupper() for c in v) and any(c.islower() for c in v)


@dataclass(frozen=True)
class PiiPattern:
    """One way a type shows up: a Python pattern, an optional check of each match, and the part
    of the match that is masked (group ``value`` if the pattern has one, else all of it)."""

    type: str
    regex: re.Pattern
    check: Callable[[re.Match], bool] | None = None


# no word character, dot, @, + or -, nor a digit group, right before a number
_B = r"(?<![\w@.+-])(?<!\d[ /-])"
_E = r"(?![\w@-])(?![.,]\d)"  # none right after it, and no decimal part continuing it

PATTERNS: tuple[PiiPattern, ...] = (
    # --- secrets
    PiiPattern("secret", re.compile(
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----.*?"
        r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\Z)", re.S)),
    PiiPattern("secret", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    PiiPattern("secret", re.compile(
        r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA)[A-Z0-9]{16}(?![A-Z0-9])")),
    PiiPattern("secret", re.compile(
        r"(?i:aws[\w .-]{0,20}?(?:secret|key)[\w .-]{0,20}?[\"']?\s*[:=]\s*[\"']?)"
        r"(?P<value>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"), _looks_like_a_key),
    PiiPattern("secret", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b")),
    PiiPattern("secret", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    PiiPattern("secret", re.compile(r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+")),
    PiiPattern("secret", re.compile(r"\b(?:sk|rk|whsec)_(?:live_|test_)?[A-Za-z0-9]{16,}\b")),
    PiiPattern("secret", re.compile(r"\bsk-(?:proj-|ant-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"),
               _looks_like_a_key),
    PiiPattern("secret", re.compile(r"\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])")),
    PiiPattern("secret", re.compile(r"(?i:\bbearer\s+)(?P<value>[A-Za-z0-9._~+/-]{16,}=*)"), _looks_like_a_key),
    PiiPattern("secret", re.compile(
        r"(?i:\b(?:api[_-]?key|secret[_-]?key|client[_-]?secret|access[_-]?token|auth[_-]?token|private[_-]?key"
        r"|secret|password|passwd|pwd|token)[\"']?\s*[:=]\s*[\"']?)(?P<value>[^\s\"',;]{6,})"), _looks_like_a_key),
    # --- e-mail
    PiiPattern("email", re.compile(
        r"(?<![\w@.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
        r"(?!(?:png|jpe?g|gif|svg|webp|ico|bmp|tiff?)\b)[A-Za-z]{2,24}(?![\w-])")),
    # --- IBAN: the account part is cut to the country's length in _mask_iban
    PiiPattern("iban", re.compile(r"(?<![\w])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![\w])")),
    # --- payment cards
    PiiPattern("credit_card", re.compile(_B + r"\d(?:[ -]?\d){12,18}" + _E), _card_ok),
    # --- addresses
    PiiPattern("ip_address", re.compile(
        r"(?<![\w.-])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?!\w|\.\d)"),
        _ipv4_ok),
    PiiPattern("ip_address", re.compile(
        r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?(?![\w:])"), _ipv6_ok),
    # --- phone numbers
    PiiPattern("phone", re.compile(
        _B + r"(?:\+|\b00)[1-9]\d{0,2}(?:[ .-]?\(0?\d{0,4}\))?(?:[ .-]?\d{1,5}){1,6}(?!\w|[.,-]?\d)"),
        _international_phone_ok),
    PiiPattern("phone", re.compile(
        _B + r"(?:\(\d{3}\) ?|\d{3}[-.])\d{3}[-.]\d{4}(?!\w|[.,-]?\d)"),
        _north_american_phone_ok),
    PiiPattern("phone", re.compile(
        _B + r"(?<!/)(?<![0-9A-Fa-f]{2} [0-9A-Fa-f]{2} )0\d{1,4}(?:(?: ?[/-] ?| )\d{2,8}){1,4}(?!\w|[./-]?\d)"),
        _national_phone_ok),
)

#: cheap RE2 tests, one per type, that every find of that type satisfies (used by Arrow to pick
#: the rows worth the Python pass; false positives cost time, never correctness)
PREFILTERS = {
    "secret": r"PRIVATE KEY|eyJ|A[KSBCGIPNR][A-Z]{2}[A-Z0-9]{16}|gh[pousr]_|github_pat_|xox[abposr]-|hooks\.slack"
              r"|(?:sk|rk|whsec)_|sk-|AIza|(?i:bearer|aws|key|secret|token|passw|pwd)",
    "email": r"[A-Za-z0-9._%+-]@[A-Za-z0-9-]+\.",
    "iban": r"[A-Z]{2}\d{2} ?[A-Z0-9]{4}",
    "credit_card": r"[2-6]\d{3}[ -]?\d{4}",
    "ip_address": r"\d\.\d{1,3}\.\d{1,3}\.\d|[0-9A-Fa-f]:[0-9A-Fa-f]*:|::[0-9A-Fa-f]",
    "phone": r"(?:\+|00)[1-9]\d{0,2}[ .(-]*\d|\d{3}[-.]\d{3}[-.]\d{4}|\(\d{3}\) ?\d{3}|0\d{1,4} ?[ /-] ?\d{2}",
}


class PiiScanner:
    """The patterns of the enabled types, in :data:`MASK_ORDER`."""

    def __init__(self, types) -> None:
        enabled = set(types)
        self.patterns = [p for t in MASK_ORDER if t in enabled for p in PATTERNS if p.type == t]
        self.prefilter = "|".join(f"(?:{PREFILTERS[t]})" for t in MASK_ORDER if t in enabled)

    def scan(self, text: str) -> tuple[str, Counter]:
        """The text with every find replaced by its placeholder, and the finds per type."""
        found: Counter = Counter()
        for pat in self.patterns:
            placeholder = PLACEHOLDERS[pat.type]

            def replace(m: re.Match, pat=pat, placeholder=placeholder) -> str:
                if pat.type == "iban":
                    return _mask_iban(m, found)
                if pat.check is not None and not pat.check(m):
                    return m.group(0)
                found[pat.type] += 1
                if "value" in pat.regex.groupindex:
                    s, e = m.span("value")
                    whole = m.group(0)
                    return whole[: s - m.start()] + placeholder + whole[e - m.start():]
                return placeholder

            text = pat.regex.sub(replace, text)
        return text, found


def _mask_iban(m: re.Match, found: Counter) -> str:
    """Cut the candidate to its country's IBAN length; mask it if the checksum holds and it ends
    on a boundary (the rest of the candidate, e.g. a following upper-case word, is kept)."""
    raw = m.group(0)
    want = IBAN_LENGTHS.get(raw[:2])
    if want is None:
        return raw
    n = 0
    for end, ch in enumerate(raw):
        if ch != " ":
            n += 1
            if n == want:
                break
    else:
        return raw
    rest = raw[end + 1:]
    if rest and rest[0] != " ":
        return raw
    if not iban_ok(raw[: end + 1].replace(" ", "")):
        return raw
    found["iban"] += 1
    return PLACEHOLDERS["iban"] + rest


def describe(found: Counter) -> str:
    """``email=2, phone=1`` in mask order."""
    return ", ".join(f"{t}={found[t]}" for t in MASK_ORDER if found.get(t))


class Pii(Stage):
    """Masks (or rejects rows with) personal data and secrets; adds ``pii_count``, the number of
    finds in the row, and counts finds per type in the manifest (stage counters)."""

    kind = "pii"
    Config = PiiConfig

    def __init__(self, config: PiiConfig, *, name: str, run) -> None:
        super().__init__(config, name=name, run=run)
        self.scanner = PiiScanner(config.types)

    def output_fields(self, schema: pa.Schema) -> pa.Schema:
        return schema.append(pa.field(COUNT_COLUMN, pa.int32(), nullable=False))

    def process(self, batch: pa.Table, info: BatchInfo) -> StageOutput:
        n = batch.num_rows
        counts = np.zeros(n, dtype=np.int32)
        per_row: dict[int, Counter] = {}
        total: Counter = Counter()
        masked_columns: dict[str, pa.Array] = {}
        for name in self.config.fields:
            if name not in batch.column_names:
                raise ValueError(
                    f"stage '{self.name}': fields lists '{name}', but the rows have no such column; "
                    f"map it in the inputs ({name}_field) or remove it from pii.fields"
                )
            column = batch.column(name).combine_chunks()
            maybe = pc.match_substring_regex(column, self.scanner.prefilter).fill_null(False)
            rows = np.flatnonzero(maybe.to_numpy(zero_copy_only=False))
            if not len(rows):
                continue
            changed = np.zeros(n, dtype=bool)
            replacements = []
            for r, text in zip(rows.tolist(), column.take(pa.array(rows)).to_pylist()):
                masked, found = self.scanner.scan(text)
                if found:
                    changed[r] = True
                    replacements.append(masked)
                    counts[r] += sum(found.values())
                    per_row.setdefault(r, Counter()).update(found)
                    total.update(found)
            if replacements:
                masked_columns[name] = pc.replace_with_mask(column, pa.array(changed), pa.array(replacements, column.type))
        counters = {t: total[t] for t in MASK_ORDER if total.get(t)}
        if per_row:
            counters["rows_with_pii"] = len(per_row)
        if self.config.action == "mask":
            for name, column in masked_columns.items():
                i = batch.schema.get_field_index(name)
                batch = batch.set_column(i, batch.schema.field(i), column)
        batch = batch.append_column(pa.field(COUNT_COLUMN, pa.int32(), nullable=False), pa.array(counts))
        if self.config.action == "mask" or not per_row:
            return StageOutput(batch, None, counters)
        keep = counts == 0
        details = [f"found {describe(per_row[r])} in {', '.join(self.config.fields)}" for r in np.flatnonzero(~keep)]
        return self.split(batch, keep, REASON, details, counters)

