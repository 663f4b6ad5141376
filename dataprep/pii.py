"""The ``pii`` stage: personal data and secrets are masked with typed placeholders, reported, or the
row is rejected as ``pii_found``.

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

**Values that are not personal data stay** (:class:`PiiAllow`, each on by default): reserved
example domains, documentation, private and loopback addresses, subnet masks, payment processors'
published test card numbers, fictional phone numbers (555-01xx, Ofcom's drama ranges), public DNS
resolvers, and the user's own ``allow_values``. A tutorial's ``user@example.com``, a router's
``192.168.1.1`` or Stripe's ``4242 4242 4242 4242`` are the content of the answer, not a person.

**Where.** ``fields`` takes field references (:mod:`corpusmill.sft`): by default every trained
field and every turn of instruction and chat rows, ``text`` on plain rows. Masking goes through
:class:`~corpusmill.sft.FieldSelection`, so the trained fields are what changes and ``text`` is
re-derived from them.

**One value, one placeholder, everywhere in the row.** The finds of all selected fields of a row
are pooled: a value found in one field (a password after ``password:`` in the prompt) is masked
wherever it occurs in the row's other selected fields too (the response repeating it, a later
turn). With ``placeholders: per_value`` (the default) a row holding two distinct e-mail addresses
gets ``<EMAIL_1>`` and ``<EMAIL_2>``, numbered in order of first appearance, so the answer still
tells the two people apart; a row holding one gets ``<EMAIL>``.

Speed: one RE2 pre-filter over the selected strings (``pc.match_substring_regex``) picks those
that may hold any of the enabled types; only they go through the Python-level patterns and
checks (Luhn, mod-97, address parsing), and only the rows with a find are pooled. Clean strings
never leave Arrow.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import AliasChoices, Field, field_validator

from corpusmill import schema as S
from corpusmill.errors import CorpusmillError
from corpusmill.sft import TRAINED, FieldSelection, check_fields, default_fields, is_sft
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
TYPES_COLUMN = "pii_types"
REASON = "pii_found"


class PiiAllow(StageConfig):
    """Values that look like a type but are not personal data, kept as they are. Each is on by
    default: instruction data teaches with exactly these values (an e-mail validator's tests, a
    network configuration answer, payment integration docs), and masking them destroys the answer.
    ``allow: false`` turns them all off (every find is masked, as before version 2 of the stage)."""

    example_domains: bool = Field(
        True, description="e-mail addresses at the reserved example domains (RFC 2606, RFC 6761): example.com, "
                          "example.net, example.org and their subdomains, any name under .example, .test, "
                          ".invalid, .localhost, and localhost",
    )
    documentation_ips: bool = Field(
        True, description="the documentation address ranges (RFC 5737, RFC 3849): 192.0.2.0/24, 198.51.100.0/24, "
                          "203.0.113.0/24, 2001:db8::/32",
    )
    private_ips: bool = Field(
        True, description="private, loopback and unspecified addresses, which identify no one outside their own "
                          "network: 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 127.0.0.0/8, 0.0.0.0, ::1, ::, "
                          "fc00::/7 (IPv6 unique local)",
    )
    subnet_masks: bool = Field(
        True, description="IPv4 netmasks (contiguous ones then zeros: 255.255.255.0, 255.255.240.0, 255.0.0.0) and "
                          "their inverse, the wildcard masks of access lists (0.0.0.255, 0.0.15.255)",
    )
    test_cards: bool = Field(
        True, description="card numbers that payment processors publish for testing (Stripe, PayPal/Braintree, "
                          "Adyen, Authorize.net, Worldpay), e.g. 4242 4242 4242 4242, 4111 1111 1111 1111, "
                          "5555 5555 5555 4444, 3782 822463 10005; the list is TEST_CARDS",
    )
    fictional_phones: bool = Field(
        True, description="numbers reserved for fiction: North American 555-0100 to 555-0199 (any area code), "
                          "and the UK's Ofcom drama ranges (020 7946 0xxx, 0113 496 0xxx and the other 01x1 "
                          "496 0xxx, 01632 960xxx, 07700 900xxx, 028 9649 6xxx, 029 2018 0xxx...)",
    )
    public_dns: bool = Field(
        True, description="the addresses of public DNS resolvers, which configuration answers name: 8.8.8.8, "
                          "8.8.4.4, 1.1.1.1, 1.0.0.1, 9.9.9.9, 149.112.112.112, 208.67.222.222, 208.67.220.220 "
                          "and their IPv6 counterparts",
    )


class PiiConfig(StageConfig):
    """Which personal data to look for, where, what to keep, and what to do with a row that has some."""

    types: list[PiiType] = Field(
        default_factory=lambda: list(PII_TYPES), min_length=1,
        description="types to find: email, phone, ip_address, credit_card, iban, secret; default all of them",
    )
    action: Literal["mask", "reject", "report"] = Field(
        "mask", validation_alias=AliasChoices("action", "mode"),
        description="mask: replace each find with its placeholder (<EMAIL>, <PHONE>, ...) and keep the row; "
                    "report: change no text, only annotate (pii_count, pii_types, stage counters), to see what "
                    "masking would do; reject: reject every row with a find as 'pii_found' (text unchanged, types "
                    "and fields in the detail). Default mask: the rest of the text is usually worth keeping. "
                    "Also accepted as `mode`",
    )
    fields: list[str] | None = Field(
        None, min_length=1,
        description="the fields scanned and masked, as field references: text, trained, system, prompt, response, "
                    "messages, messages.<role> (messages.user, messages.assistant...). Default: every trained "
                    "field and every turn on instruction and chat rows ('trained'), text on plain rows. On "
                    "instruction and chat rows 'text' is derived from the trained fields, so listing it means "
                    "them. A field the rows do not have at all is a configuration error; a field that some rows "
                    "leave empty (null) is skipped on those rows",
    )
    placeholders: Literal["per_value", "per_type"] = Field(
        "per_value",
        description="per_value: within a row each distinct value gets its own placeholder, numbered in order of "
                    "first appearance when the row holds more than one of its type (<EMAIL_1>, <EMAIL_2>; a single "
                    "one stays <EMAIL>), so a response still tells two people apart; per_type: every value of a "
                    "type becomes the same placeholder (<EMAIL>)",
    )
    allow: PiiAllow = Field(
        default_factory=PiiAllow,
        description="values that look like a type but are not personal data, kept as they are; each kind can be "
                    "turned off (allow: {test_cards: false}), `allow: false` turns them all off",
    )
    allow_values: list[str] = Field(
        default_factory=list,
        description="the user's own values never masked: an exact value (support@acme.com, a company phone "
                    "number; spacing and separators of numbers do not matter, e-mail case does not matter), or "
                    "'@domain' for every e-mail address at that domain",
    )

    @field_validator("types", "fields")
    @classmethod
    def _no_repeats(cls, v: list[str] | None) -> list[str] | None:
        repeated = sorted({x for x in v if v.count(x) > 1}) if v else []
        if repeated:
            raise ValueError(f"listed more than once: {', '.join(repeated)}")
        return v

    @field_validator("allow", mode="before")
    @classmethod
    def _allow_all_or_none(cls, v):
        if isinstance(v, bool):
            return {name: v for name in PiiAllow.model_fields}
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
    # "since dpkg 1.15.5.4", "seit Dpkg 1.15.8.6", "depuis dpkg 1.15.8.6": a release a feature came in
    r"|(?i:\b(?:since|seit|depuis|desde)\s+(?:[\w.+-]+\s+)?)$"
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
    # a password given in prose ("my password is Summer2023!", "set the passphrase to h4ppy-h0rse"); a
    # closing full stop or bracket is the sentence's, not the password's
    PiiPattern("secret", re.compile(
        r"(?i:\b(?:password|passwd|passphrase|passcode|passwort|kennwort)\s+(?:is|was|to|ist|lautet)\s+[\"'`]?)"
        r"(?P<value>[^\s\"'`,;]{5,}[^\s\"'`,;.)\]])"), _looks_like_a_key),
    # --- e-mail
    PiiPattern("email", re.compile(
        r"(?<![\w@.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
        r"(?!(?:png|jpe?g|gif|svg|webp|ico|bmp|tiff?|service|socket|target|timer|mount|automount|path|slice|scope"
        r"|swap|device)\b)[A-Za-z]{2,24}(?![\w-])")),
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
        _B + r"(?<![/:])(?<![0-9A-Fa-f]{2} [0-9A-Fa-f]{2} )0\d{1,4}(?:(?: ?[/-] ?| )\d{2,8}){1,4}(?!\w|[./-]?\d)"),
        _national_phone_ok),
)

#: cheap RE2 tests, one per type, that every find of that type satisfies (used by Arrow to pick
#: the rows worth the Python pass; false positives cost time, never correctness)
PREFILTERS = {
    "secret": r"PRIVATE KEY|eyJ|A[KSBCGIPNR][A-Z]{2}[A-Z0-9]{16}|gh[pousr]_|github_pat_|xox[abposr]-|hooks\.slack"
              r"|(?:sk|rk|whsec)_|sk-|AIza|(?i:bearer|aws|key|secret|token|passw|pwd|passphrase|passcode|kennwort)",
    "email": r"[A-Za-z0-9._%+-]@[A-Za-z0-9-]+\.",
    "iban": r"[A-Z]{2}\d{2} ?[A-Z0-9]{4}",
    "credit_card": r"[2-6]\d{3}[ -]?\d{4}",
    "ip_address": r"\d\.\d{1,3}\.\d{1,3}\.\d|[0-9A-Fa-f]:[0-9A-Fa-f]*:|::[0-9A-Fa-f]",
    "phone": r"(?:\+|00)[1-9]\d{0,2}[ .(-]*\d|\d{3}[-.]\d{3}[-.]\d{4}|\(\d{3}\) ?\d{3}|0\d{1,4} ?[ /-] ?\d{2}",
}



# ----------------------------------------------------------------------------- allowlists

#: second-level domains reserved for examples (RFC 2606 section 3), with their subdomains
EXAMPLE_DOMAINS = ("example.com", "example.net", "example.org")
#: top-level names reserved for testing and documentation (RFC 2606 section 2, RFC 6761)
RESERVED_TLDS = frozenset({"example", "test", "invalid", "localhost"})


def _networks(*cidrs: str) -> tuple:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


DOCUMENTATION_NETS = _networks("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
PRIVATE_NETS = _networks("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "0.0.0.0/32",
                         "::1/128", "::/128", "fc00::/7")
PUBLIC_DNS = frozenset(ipaddress.ip_address(a) for a in (
    "8.8.8.8", "8.8.4.4", "1.1.1.1", "1.0.0.1", "9.9.9.9", "149.112.112.112", "208.67.222.222", "208.67.220.220",
    "2001:4860:4860::8888", "2001:4860:4860::8844", "2606:4700:4700::1111", "2606:4700:4700::1001",
    "2620:fe::fe", "2620:fe::9", "2620:119:35::35", "2620:119:53::53",
))

#: card numbers payment processors publish for testing: Stripe, PayPal/Braintree, Adyen,
#: Authorize.net, Worldpay, Checkout.com (their test-card pages). Only Luhn-valid ones are kept,
#: as nothing else is ever found as a card.
_TEST_CARD_LIST = """
4242424242424242 4000056655665556 5555555555554444 2223003122003222 5200828282828210 5105105105105100
378282246310005 371449635398431 6011111111111117 6011000990139424 6011981111111113 3056930009020004
36227206271667 6555900000604105 3566002020360505 6200000000000005 6200000000000047 6205500000000000004
4000002500003155 4000002760003184 4000003800000446 4000000000003220 4000000000003063 4000008400001629
4000000000000002 4000000000009995 4000000000009987 4000000000009979 4000000000000069 4000000000000127
4000000000000119 4000000000006975 4000000000000077 4000003720000278 4000000000000259 4000000000002685
4000000000001976 4000000000005423 4000000000000101 4000000000000341 4100000000000019 4000000000009235
4000000760000002 4000001240000000 4000004840008001 4000000400000008 4000000560000004 4000002080000001
4000002460000001 4000002500000003 4000002760000016 4000003720000005 4000003800000008 4000004420000006
4000005280000002 4000005780000007 4000006160000005 4000006200000007 4000007240000007 4000007520000008
4000007560000009 4000008260000000 4000058260000005 5555558265554449 4000000360000006 4000001560000002
4000003440000004 4000003920000003 3530111333300000 4000004580000002 4000005540000008 4000007020000003
4111111111111111 4005519200000004 4009348888881881 4012000033330026 4012000077777777 4012888888881881
4217651111111119 4500600000000061 4000111111111115 2223000048400011 2222405343248877 2222990905257051
2223007648726984 2223577120017656 5431111111111111 378734493671000 6011601160116611 30569309025904
38520000023237 36259600000004 4222222222222 6304000000000000 6759649826438453 5019717010103742
6331101999990016 370000000000002 6011000000000012 3088000000000017 38000000000006 4007000000027
4012888818888 5424000000000015 2223000010309703 2223000010309711 5500000000000004 4111111145551142
4988438843884305 4166676667666746 4646464646464644 4000620000000007 4000060000000006 4293189100000008
4988080000000000 5555341244441115 5577000055770004 5136333333333335 5585558555855583 5555444433331111
2222400070000005 2222400010000008 2222410740360010 370000000100018 36006666333344 3569990010095841
6243030000000001 4444333322221111 5454545454545454 4917610000000000 4462030000000000 4484070000000000
4543474002249996 5436031030606378 345678901234564 3566111111111113
"""
TEST_CARDS = frozenset(c for c in _TEST_CARD_LIST.split() if luhn_ok(c))

#: the UK's numbers for drama (Ofcom), as national numbers: these prefixes, 11 digits in all
UK_DRAMA_PREFIXES = (
    "02079460", "01134960", "01144960", "01154960", "01164960", "01174960", "01184960", "01214960", "01314960",
    "01414960", "01514960", "01614960", "02896496", "02920180", "01632960", "07700900", "08081570", "09098790",
    "03069990",
)


def _fictional_phone(value: str) -> bool:
    """North American 555-0100..555-0199 under any area code, or an Ofcom drama number."""
    digits = re.sub(r"\D", "", value)
    international = value.startswith(("+", "00"))
    if value.startswith("00"):
        digits = digits[2:]
    if international:
        nanp = digits[1:] if digits.startswith("1") else ""
        national = "0" + digits[2:] if digits.startswith("44") else ""
    else:
        nanp = national = digits
    if len(nanp) == 10 and nanp[3:6] == "555" and nanp[6:8] == "01":
        return True
    return len(national) == 11 and national.startswith(UK_DRAMA_PREFIXES)


def _ip_allowed(value: str, allow: PiiAllow) -> str | None:
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        return None
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if allow.documentation_ips and any(addr in net for net in DOCUMENTATION_NETS):
        return "documentation_ips"
    if allow.private_ips and any(addr in net for net in PRIVATE_NETS):
        return "private_ips"
    if allow.public_dns and addr in PUBLIC_DNS:
        return "public_dns"
    if allow.subnet_masks and addr.version == 4:
        x = int(addr)
        ones_then_zeros = x ^ 0xFFFFFFFF
        if ones_then_zeros & (ones_then_zeros + 1) == 0 or x & (x + 1) == 0:
            return "subnet_masks"
    return None


def _email_domain_reserved(value: str) -> bool:
    domain = value.rpartition("@")[2].lower().rstrip(".")
    if domain == "localhost" or domain.rpartition(".")[2] in RESERVED_TLDS:
        return True
    return any(domain == d or domain.endswith("." + d) for d in EXAMPLE_DOMAINS)


def value_key(type_: str, value: str) -> str:
    """What makes two finds the same value: e-mail and addresses up to case, numbers up to their
    spacing and separators, IBANs up to spacing and case, secrets exactly."""
    if type_ in ("email", "ip_address"):
        return value.lower()
    if type_ in ("phone", "credit_card"):
        return re.sub(r"\D", "", value)
    if type_ == "iban":
        return re.sub(r"\s", "", value).upper()
    return value


class Allowlist:
    """Decides whether a find is a value that is not personal data (:class:`PiiAllow`, and the
    user's ``allow_values``); :meth:`reason` names the allowlist that keeps it."""

    def __init__(self, allow: PiiAllow, values: Iterable[str] = ()) -> None:
        self.allow = allow
        values = [v.strip() for v in values if v.strip()]
        self.domains = {v[1:].lower() for v in values if v.startswith("@")}
        self.values = {t: {value_key(t, v) for v in values if not v.startswith("@")} for t in PII_TYPES}
        self.values["phone"].discard("")
        self.values["credit_card"].discard("")

    def reason(self, type_: str, value: str) -> str | None:
        """The allowlist that keeps this value, or None when it is to be masked."""
        if value_key(type_, value) in self.values[type_]:
            return "values"
        allow = self.allow
        if type_ == "email":
            if value.rpartition("@")[2].lower() in self.domains:
                return "values"
            if allow.example_domains and _email_domain_reserved(value):
                return "example_domains"
        elif type_ == "ip_address":
            return _ip_allowed(value, allow)
        elif type_ == "credit_card":
            if allow.test_cards and re.sub(r"\D", "", value) in TEST_CARDS:
                return "test_cards"
        elif type_ == "phone":
            if allow.fictional_phones and _fictional_phone(value):
                return "fictional_phones"
        return None


# ----------------------------------------------------------------------------- finding and masking


@dataclass(frozen=True)
class Find:
    """One value found in a string: its type, the part that is masked, as written, and the
    allowlist that keeps it (None: it is masked)."""

    type: str
    value: str
    allowed: str | None = None


# While a string is scanned, each find is replaced by a marker (an opener, the find's index in
# hexadecimal digits, a closer; private-use characters, neither word characters nor digits), so
# later patterns neither match inside a find nor take a kept value for something else, and the
# placeholder can be chosen once the whole row is known. The opener is a run of U+E000 longer
# than any in the text, so a marker never collides with the text's own characters.
_MARK_DIGIT0 = 0xE100
_MARK_CLOSE = "\ue0ff"
_MARK_DIGITS = "".join(chr(_MARK_DIGIT0 + d) for d in range(16))


@dataclass
class MarkedText:
    """A string with its finds replaced by markers; ``finds[k]`` is marker k's."""

    text: str
    finds: list[Find]
    opener: str

    def mark(self, find: Find) -> str:
        self.finds.append(find)
        k = len(self.finds) - 1
        return self.opener + "".join(_MARK_DIGITS[int(c, 16)] for c in f"{k:x}") + _MARK_CLOSE

    def markers(self) -> re.Pattern:
        return _marker_pattern(self.opener)

    def render(self, label: Callable[[Find], str]) -> str:
        """The text with each marker replaced by ``label(find)``."""
        if not self.finds:
            return self.text
        return self.markers().sub(lambda m: label(self.finds[_marker_index(m)]), self.text)

    def in_order(self) -> list[Find]:
        """The finds in the order they appear in the text."""
        return [self.finds[_marker_index(m)] for m in self.markers().finditer(self.text)] if self.finds else []


def _opener(text: str) -> str:
    if "\ue000" not in text:
        return "\ue000"
    return "\ue000" * (max(len(r) for r in re.findall("\ue000+", text)) + 1)


_MARKER_PATTERNS: dict[str, re.Pattern] = {}


def _marker_pattern(opener: str) -> re.Pattern:
    pat = _MARKER_PATTERNS.get(opener)
    if pat is None:
        pat = _MARKER_PATTERNS[opener] = re.compile(
            re.escape(opener) + f"([{_MARK_DIGITS[0]}-{_MARK_DIGITS[-1]}]+)" + _MARK_CLOSE)
    return pat


def _marker_index(m: re.Match) -> int:
    return int("".join(f"{ord(c) - _MARK_DIGIT0:x}" for c in m.group(1)), 16)


def placeholder(type_: str, number: int | None = None) -> str:
    """``<EMAIL>``, or ``<EMAIL_2>`` for the second distinct e-mail address of a row."""
    return PLACEHOLDERS[type_] if number is None else f"{PLACEHOLDERS[type_][:-1]}_{number}>"


class PiiScanner:
    """The patterns of the enabled types, in :data:`MASK_ORDER`, and the allowlist (None: none)."""

    def __init__(self, types, allow: Allowlist | None = None) -> None:
        enabled = set(types)
        self.patterns = [p for t in MASK_ORDER if t in enabled for p in PATTERNS if p.type == t]
        self.prefilter = "|".join(f"(?:{PREFILTERS[t]})" for t in MASK_ORDER if t in enabled)
        self.allow = allow

    def find(self, text: str) -> MarkedText:
        """``text`` with every find (kept ones included) replaced by a marker."""
        out = MarkedText(text, [], _opener(text))
        for pat in self.patterns:

            def replace(m: re.Match, pat=pat) -> str:
                whole = m.group(0)
                if pat.type == "iban":
                    end = _iban_end(m)
                    if end is None:
                        return whole
                    return self._mark(out, "iban", whole[:end]) + whole[end:]
                if pat.check is not None and not pat.check(m):
                    return whole
                if "value" in pat.regex.groupindex:
                    s, e = m.start("value") - m.start(), m.end("value") - m.start()
                    return whole[:s] + self._mark(out, pat.type, whole[s:e]) + whole[e:]
                return self._mark(out, pat.type, whole)

            out.text = pat.regex.sub(replace, out.text)
        return out

    def _mark(self, out: MarkedText, type_: str, value: str) -> str:
        return out.mark(Find(type_, value, self.allow.reason(type_, value) if self.allow else None))

    def scan(self, text: str) -> tuple[str, Counter]:
        """One string on its own: every find replaced by its type's placeholder (kept values
        stay), and the masked finds per type."""
        marked = self.find(text)
        found = Counter(f.type for f in marked.finds if f.allowed is None)
        return marked.render(lambda f: f.value if f.allowed else PLACEHOLDERS[f.type]), found

    def mask_row(self, parts: list[MarkedText], *, per_value: bool = True) -> list[tuple[str, list[Find]]]:
        """Mask the selected strings of one row together: every value found in one of them is
        masked wherever it occurs in all of them, and each distinct value gets one placeholder
        (numbered per type with ``per_value`` when the row holds several). Returns, per part, the
        masked text and its masked finds (kept values are left as written and not returned)."""
        spread: dict[str, str] = {}
        for part in parts:
            for f in part.finds:
                if f.allowed is None:
                    spread.setdefault(f.value, f.type)
        if spread:
            # longest first, so a value holding another is masked whole; a value starting or
            # ending in a word character must not be part of a longer word
            again = re.compile("|".join(_whole(v) for v in sorted(spread, key=len, reverse=True)))
            for part in parts:
                part.text = again.sub(lambda m, part=part: part.mark(Find(spread[m.group(0)], m.group(0))), part.text)
        order: dict[str, dict[str, None]] = {}
        found = []
        for part in parts:
            masked = [f for f in part.in_order() if f.allowed is None]
            for f in masked:
                order.setdefault(f.type, {}).setdefault(value_key(f.type, f.value))
            found.append(masked)
        numbers = {t: {k: i + 1 for i, k in enumerate(keys)} for t, keys in order.items()}

        def label(f: Find) -> str:
            if f.allowed:
                return f.value
            if not per_value or len(numbers[f.type]) == 1:
                return PLACEHOLDERS[f.type]
            return placeholder(f.type, numbers[f.type][value_key(f.type, f.value)])

        return [(part.render(label), masked) for part, masked in zip(parts, found)]


def _whole(value: str) -> str:
    """A pattern for ``value`` as written, not as part of a longer word."""
    before = r"(?<!\w)" if re.match(r"\w", value) else ""
    after = r"(?!\w)" if re.search(r"\w$", value) else ""
    return before + re.escape(value) + after


def _iban_end(m: re.Match) -> int | None:
    """Where an IBAN candidate ends once cut to its country's length, if it ends on a boundary
    (the rest, e.g. a following upper-case word, is kept) and the checksum holds; else None."""
    raw = m.group(0)
    want = IBAN_LENGTHS.get(raw[:2])
    if want is None:
        return None
    n = 0
    for end, ch in enumerate(raw):
        if ch != " ":
            n += 1
            if n == want:
                break
    else:
        return None
    rest = raw[end + 1:]
    if rest and rest[0] != " ":
        return None
    if not iban_ok(raw[: end + 1].replace(" ", "")):
        return None
    return end + 1


def describe(found: Counter) -> str:
    """``email=2, phone=1`` in mask order."""
    return ", ".join(f"{t}={found[t]}" for t in MASK_ORDER if found.get(t))


# ----------------------------------------------------------------------------- the stage


class Pii(Stage):
    """Masks, reports, or rejects rows with personal data and secrets in the selected fields.

    Adds ``pii_count`` (the masked finds in the row, over all its selected fields) and
    ``pii_types`` (their types, in mask order) to every row. Stage counters: finds per type
    (``email``...), per field (``in_prompt``, ``in_response``, ``in_messages.user``...),
    ``rows_with_pii``, and the values kept per allowlist (``allowed_test_cards``...)."""

    kind = "pii"
    Config = PiiConfig
    #: 2: trained fields by default, allowlists, one placeholder per value across the row, pii_types
    version = 2

    def __init__(self, config: PiiConfig, *, name: str, run) -> None:
        super().__init__(config, name=name, run=run)
        self.scanner = PiiScanner(config.types, Allowlist(config.allow, config.allow_values))

    def fields_for(self, schema: pa.Schema) -> list[str]:
        """The field references scanned on rows of this schema. On instruction and chat rows
        ``text`` is derived from the trained fields, so it stands for them."""
        fields = list(self.config.fields) if self.config.fields else default_fields(schema)
        if is_sft(schema):
            fields = list(dict.fromkeys(TRAINED if f == S.TEXT else f for f in fields))
        return fields

    def check(self, schema: pa.Schema) -> list[str]:
        if not self.config.fields:
            return []
        try:
            check_fields(self.config.fields, schema, self.name)
        except CorpusmillError as e:
            return [str(e)]
        return []

    def output_fields(self, schema: pa.Schema) -> pa.Schema:
        return (schema.append(pa.field(COUNT_COLUMN, pa.int32(), nullable=False))
                .append(pa.field(TYPES_COLUMN, pa.list_(pa.string()), nullable=False)))

    def process(self, batch: pa.Table, info: BatchInfo) -> StageOutput:
        if self.config.fields:
            check_fields(self.config.fields, batch.schema, self.name)
        sel = FieldSelection(batch, self.fields_for(batch.schema))
        n = batch.num_rows
        counts = np.zeros(n, dtype=np.int32)
        per_row: dict[int, Counter] = {}
        where: dict[int, dict[str, None]] = {}
        counters: Counter = Counter()
        strings = sel.strings

        scanned: dict[int, MarkedText] = {}
        if len(strings):
            maybe = pc.match_substring_regex(strings, self.scanner.prefilter).fill_null(False)
            candidates = np.flatnonzero(maybe.to_numpy(zero_copy_only=False))
            for i, text in zip(candidates.tolist(), strings.take(pa.array(candidates)).to_pylist()):
                marked = self.scanner.find(text)
                if marked.finds:
                    scanned[i] = marked
                    counters.update(f"allowed_{f.allowed}" for f in marked.finds if f.allowed)
        hit_rows = np.unique([sel.rows[i] for i, m in scanned.items() if any(f.allowed is None for f in m.finds)])

        replaced: dict[int, str] = {}
        if len(hit_rows):
            # every selected string of those rows, grouped by row, in selection order
            members = np.flatnonzero(np.isin(sel.rows, hit_rows))
            members = members[np.argsort(sel.rows[members], kind="stable")]
            unscanned = [int(i) for i in members if int(i) not in scanned]
            raw = dict(zip(unscanned, strings.take(pa.array(unscanned, pa.int64())).to_pylist()))
            labels = _field_labels(sel)
            groups = np.split(members, np.flatnonzero(np.diff(sel.rows[members])) + 1)
            per_value = self.config.placeholders == "per_value"
            for group in groups:
                parts = [scanned.get(int(i)) or MarkedText(raw[int(i)], [], _opener(raw[int(i)])) for i in group]
                row = int(sel.rows[group[0]])
                found = per_row.setdefault(row, Counter())
                for i, (text, masked) in zip(group.tolist(), self.scanner.mask_row(parts, per_value=per_value)):
                    if not masked:
                        continue
                    replaced[i] = text
                    found.update(f.type for f in masked)
                    counters[f"in_{labels[i]}"] += len(masked)
                    where.setdefault(row, {})[labels[i]] = None
                counts[row] = sum(found.values())
        for found in per_row.values():
            counters.update(found)
        if per_row:
            counters["rows_with_pii"] = len(per_row)

        if self.config.action == "mask" and replaced:
            at = sorted(replaced)
            mask = np.zeros(len(strings), dtype=bool)
            mask[at] = True
            new = pa.array([replaced[i] for i in at], pa.string())
            batch = sel.write(pc.replace_with_mask(strings, pa.array(mask), new))
        types = [[t for t in MASK_ORDER if t in per_row[r]] if r in per_row else [] for r in range(n)]
        batch = batch.append_column(pa.field(COUNT_COLUMN, pa.int32(), nullable=False), pa.array(counts))
        batch = batch.append_column(pa.field(TYPES_COLUMN, pa.list_(pa.string()), nullable=False),
                                    pa.array(types, pa.list_(pa.string())))
        counters = dict(counters)
        if self.config.action != "reject" or not per_row:
            return StageOutput(batch, None, counters)
        keep = counts == 0
        details = [f"found {describe(per_row[r])} in {', '.join(where[r])}" for r in np.flatnonzero(~keep)]
        return self.split(batch, keep, REASON, details, counters)


def _field_labels(sel: FieldSelection) -> np.ndarray:
    """The field of each selected string as the counters name it: ``prompt``, ``response``,
    ``text``..., ``messages.<role>`` for a message."""
    out = sel.ref_of()
    start = 0
    for seg in sel.segments:
        if seg.ref == S.MESSAGES:
            col = sel.batch.column(S.MESSAGES)
            col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
            roles = col.flatten().field("role").filter(pa.array(seg.mask)).to_pylist()
            out[start:start + len(roles)] = [f"messages.{r}" for r in roles]
        start += len(seg.rows)
    return out
