"""PII precision and recall on instruction data: what the ``pii`` stage masks in prompt/response rows.

Two sets:

* **Planted rows** (generated from templates with a fixed seed, 3,000 by default): instruction rows
  as people write them, holding values that are *not* personal data (an e-mail validator's test suite
  at example domains, network configuration answers with private, documentation and DNS addresses
  and netmasks, payment integration docs with processors' test cards, sample records with 555-01xx
  and Ofcom drama numbers) and values that are (names with e-mail addresses at public mail
  providers, phone numbers, Luhn-valid cards, mod-97-valid IBANs, passwords, public IP addresses,
  API keys), many of them repeated in the response the way an answer repeats what it was asked.
  Some rows hold both kinds.
* **Real rows** (bench/sft_data.py: Debian man pages as ~34k instruction rows, when installed):
  what is found and what is kept on real instruction data, with a sample of each printed for
  reading by hand.

Three ways of running the stage on the same rows:

* ``default``: this version's defaults (every trained field, allowlists on, one placeholder per
  value across the row);
* ``allow: false``: the same with every allowlist off;
* ``v1``: the stage before instruction data was first-class, pointed at ``fields: [prompt,
  response]`` (its default, ``text``, did not touch the trained fields at all): each field masked
  on its own, no allowlists, a value found in one field not looked for in the other.

Figures: **recall** (real values gone from every field of the row) and **false positives**
(harmless values masked in at least one place), per category and overall.

    python bench/bench_pii_sft.py [--rows 3000] [--no-real]
"""

from __future__ import annotations

import argparse
import random
import re
import string
import sys
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pyarrow as pa  # noqa: E402

from bench.common import save_result  # noqa: E402
from corpusmill import schema as S  # noqa: E402
from corpusmill.dataprep.pii import (  # noqa: E402
    MASK_ORDER, TEST_CARDS, Allowlist, Pii, PiiAllow, PiiConfig, PiiScanner, iban_ok, luhn_ok,
)
from corpusmill.stage import BatchInfo, RunInfo  # noqa: E402

BATCH = 4096

# ----------------------------------------------------------------------------- values

FIRST = ["Anna", "James", "Maria", "Lukas", "Sofia", "Ahmed", "Chen", "Olga", "Pedro", "Fatima", "Tom", "Ines",
         "Kenji", "Laura", "Marek", "Priya", "Noah", "Elif", "Jonas", "Amara"]
LAST = ["Nowak", "Smith", "Garcia", "Mueller", "Rossi", "Khan", "Wang", "Ivanova", "Silva", "Haddad", "Brown",
        "Moreau", "Tanaka", "Fischer", "Kowalski", "Patel", "Jensen", "Yilmaz", "Schulz", "Okafor"]
MAIL_PROVIDERS = ["gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "gmx.de", "web.de", "icloud.com",
                  "proton.me", "orange.fr", "libero.it"]
EXAMPLE_MAIL_DOMAINS = ["example.com", "example.org", "example.net", "mail.example.com", "corp.example",
                        "shop.test", "site.invalid", "app.localhost"]
#: commonly documented test numbers (Stripe's and Braintree's test-card pages), as their docs print them
DOC_TEST_CARDS = ["4242 4242 4242 4242", "4000 0000 0000 0002", "4000 0025 0000 3155", "5555 5555 5555 4444",
                  "2223 0031 2200 3222", "3782 822463 10005", "6011 1111 1111 1117", "4111 1111 1111 1111",
                  "4000 0566 5566 5556", "5105 1051 0510 5100", "4000000000009995", "4111111111111111"]
PASSWORD_WORDS = ["sunflower", "dragon", "Bella", "monkey", "Liverpool", "summer", "tr0ub4dor", "Kaffee",
                  "Hamburg", "qwerty", "Shadow", "Falcon"]


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def real_email(rng: random.Random, first: str, last: str) -> str:
    local = rng.choice([f"{first}.{last}", f"{first[0]}{last}", f"{first}{rng.randrange(70, 100)}",
                        f"{last}.{first}", f"{first}_{last}{rng.randrange(1, 30)}"]).lower()
    return f"{local}@{rng.choice(MAIL_PROVIDERS)}"


def real_phone(rng: random.Random) -> str:
    nxx = lambda: rng.choice("23456789") + _digits(rng, 2)  # noqa: E731
    while True:
        exchange = nxx()
        if exchange != "555":
            break
    return rng.choice([
        f"+44 7911 {_digits(rng, 6)}", f"+49 151 {_digits(rng, 8)}", f"({nxx()}) {exchange}-{_digits(rng, 4)}",
        f"+1 {nxx()} {exchange} {_digits(rng, 4)}", f"+33 6 {_digits(rng, 2)} {_digits(rng, 2)} {_digits(rng, 2)} {_digits(rng, 2)}",
        f"030 {_digits(rng, 7)}", f"07911 {_digits(rng, 6)}", f"{nxx()}-{exchange}-{_digits(rng, 4)}",
    ])


def real_card(rng: random.Random) -> str:
    while True:
        prefix = rng.choice(["4", "51", "53", "55", "2221", "37", "6011"])
        length = 15 if prefix == "37" else 16
        body = prefix + _digits(rng, length - len(prefix) - 1)
        digits = next(body + d for d in string.digits if luhn_ok(body + d))
        if digits not in TEST_CARDS:
            break
    if length == 15:
        return f"{digits[:4]} {digits[4:10]} {digits[10:]}"
    return rng.choice(["", " ", "-"]).join(digits[i:i + 4] for i in range(0, 16, 4))


def real_iban(rng: random.Random) -> str:
    country, bban_len = rng.choice([("DE", 18), ("FR", 23), ("ES", 20), ("IT", 23), ("NL", 14), ("PL", 24)])
    if country == "NL":
        bban = rng.choice(["ABNA", "INGB", "RABO"]) + _digits(rng, 10)
    elif country == "IT":
        bban = rng.choice(string.ascii_uppercase) + _digits(rng, 22)
    else:
        bban = _digits(rng, bban_len)
    check = 98 - int("".join(str(int(c, 36)) for c in bban + country + "00")) % 97
    value = f"{country}{check:02d}{bban}"
    assert iban_ok(value)
    return " ".join(value[i:i + 4] for i in range(0, len(value), 4)) if rng.random() < 0.6 else value


def real_password(rng: random.Random) -> str:
    return rng.choice(PASSWORD_WORDS) + str(rng.randrange(1, 2025)) + rng.choice(["", "!", "#", "?", "$"])


def public_ip(rng: random.Random) -> str:
    allow = Allowlist(PiiAllow())
    while True:
        ip = ".".join(str(x) for x in (rng.randrange(1, 224), rng.randrange(256), rng.randrange(256), rng.randrange(1, 255)))
        if allow.reason("ip_address", ip) is None:
            return ip


def api_key(rng: random.Random) -> str:
    alnum = string.ascii_letters + string.digits
    s = lambda n: "".join(rng.choice(alnum) for _ in range(n))  # noqa: E731
    return rng.choice(["AKIA" + "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(16)),
                       "ghp_" + s(36), "sk_live_" + s(24), "sk-proj-" + s(40)])


# ----------------------------------------------------------------------------- rows


class Row:
    def __init__(self, template: str) -> None:
        self.template = template
        self.values: list[tuple[str, str, str]] = []  # (harmless | real, category, value)

    def harmless(self, category: str, value: str) -> str:
        self.values.append(("harmless", category, value))
        return value

    def real(self, category: str, value: str) -> str:
        self.values.append(("real", category, value))
        return value


def validator_suite(rng, row: Row):
    locals_ = ["user", "john.doe", "first.last+tag", "a", "test_user", "dev-team", "x.y.z"]
    good = [row.harmless("example_domain_email", f"{rng.choice(locals_)}@{d}")
            for d in rng.sample(EXAMPLE_MAIL_DOMAINS, 3)]
    prompt = rng.choice(["Write pytest tests for a function `is_valid_email(address)`.",
                         "Give me unit tests for my e-mail validator in Python."])
    response = ("```python\nimport pytest\n\nfrom accounts.validation import is_valid_email\n\n\n"
                f"@pytest.mark.parametrize(\"address\", [{', '.join(repr(g) for g in good)}])\n"
                "def test_accepts_valid_addresses(address):\n    assert is_valid_email(address)\n\n\n"
                "@pytest.mark.parametrize(\"address\", [\"plainaddress\", \"@missing-local.org\", \"a@b\"])\n"
                "def test_rejects_invalid_addresses(address):\n    assert not is_valid_email(address)\n```\n"
                f"The first test covers a plain address ({good[0]}), a subdomain and a reserved test domain.")
    return prompt, response


def git_identity(rng, row: Row):
    mail = row.harmless("example_domain_email", rng.choice(["you@example.com", "jane@example.org", "dev@corp.example"]))
    return ("How do I set my name and e-mail for git commits?",
            f"Run:\n\n    git config --global user.name \"Your Name\"\n    git config --global user.email \"{mail}\"\n\n"
            f"Check with `git config user.email`; it should print {mail}.")


def interfaces_file(rng, row: Row):
    net = rng.choice(["192.168.1", "192.168.0", "10.0.0", "172.16.5", "192.168.178"])
    host = row.harmless("private_ip", f"{net}.{rng.randrange(10, 250)}")
    gw = row.harmless("private_ip", f"{net}.1")
    mask = row.harmless("subnet_mask", rng.choice(["255.255.255.0", "255.255.0.0", "255.255.255.128"]))
    dns = [row.harmless("public_dns", d) for d in rng.sample(["1.1.1.1", "8.8.8.8", "9.9.9.9", "8.8.4.4"], 2)]
    return (f"How do I give my Debian server the static address {host}?",
            f"Edit /etc/network/interfaces:\n\nauto eth0\niface eth0 inet static\n    address {host}\n"
            f"    netmask {mask}\n    gateway {gw}\n    dns-nameservers {dns[0]} {dns[1]}\n\n"
            f"Then run `sudo systemctl restart networking` and check with `ip addr` that {host} is assigned.")


def firewall_rules(rng, row: Row):
    bad = row.harmless("documentation_ip", f"203.0.113.{rng.randrange(1, 255)}")
    net = row.harmless("documentation_ip", rng.choice(["198.51.100.0", "192.0.2.0"]))
    v6 = row.harmless("documentation_ip", f"2001:db8:{rng.randrange(1, 0xffff):x}::{rng.randrange(1, 0xff):x}")
    return ("Show me iptables rules that block one address and allow a subnet.",
            f"```\niptables -A INPUT -s {bad} -j DROP\niptables -A INPUT -s {net}/24 -p tcp --dport 22 -j ACCEPT\n"
            f"ip6tables -A INPUT -s {v6} -j DROP\n```\nThe first rule drops everything from {bad}.")


def cisco_acl(rng, row: Row):
    net = row.harmless("private_ip", rng.choice(["10.1.0.0", "172.16.0.0", "192.168.10.0"]))
    wildcard = row.harmless("subnet_mask", rng.choice(["0.0.0.255", "0.0.15.255", "0.0.255.255"]))
    iface = row.harmless("private_ip", rng.choice(["10.1.0.1", "172.16.0.1", "192.168.10.1"]))
    mask = row.harmless("subnet_mask", rng.choice(["255.255.255.252", "255.255.240.0", "255.255.255.0"]))
    return ("How do I permit a subnet with a standard ACL on a Cisco router?",
            f"```\naccess-list 10 permit {net} {wildcard}\ninterface GigabitEthernet0/1\n ip address {iface} {mask}\n"
            " ip access-group 10 in\n```\nThe wildcard mask is the inverse of the netmask.")


def local_services(rng, row: Row):
    port = rng.choice([3000, 5000, 8000, 8080])
    lo = row.harmless("private_ip", rng.choice(["127.0.0.1", "0.0.0.0"]))
    docker = row.harmless("private_ip", f"172.17.0.{rng.randrange(2, 20)}")
    return ("My Flask app is not reachable from other containers. Why?",
            f"It listens on {lo}:{port}. Start it with `flask run --host 0.0.0.0`, then reach it from the other "
            f"container at http://{docker}:{port}/ (docker inspect shows the container's address). `ping6 ::1` checks "
            "IPv6 loopback.")


def stripe_docs(rng, row: Row):
    cards = [row.harmless("test_card", c) for c in rng.sample(DOC_TEST_CARDS, 3)]
    return (rng.choice(["How do I test payments in Stripe without charging a real card?",
                        "Which card numbers can I use in the Braintree sandbox?"]),
            f"In test mode use {cards[0]} with any future expiry date and any CVC. {cards[1]} exercises another "
            f"brand, and {cards[2]} lets you check how your code handles a specific outcome. Never use these in live mode.")


def sample_record(rng, row: Row):
    phone = row.harmless("fictional_phone", rng.choice([
        f"(212) 555-01{rng.randrange(100):02d}", f"+1-202-555-01{rng.randrange(100):02d}",
        f"020 7946 0{rng.randrange(1000):03d}", f"07700 900{rng.randrange(1000):03d}"]))
    mail = row.harmless("example_domain_email", f"jane.roe@{rng.choice(EXAMPLE_MAIL_DOMAINS)}")
    return ("Give me a sample customer record in JSON for my tests.",
            f'```json\n{{"name": "Jane Roe", "email": "{mail}", "phone": "{phone}", "plan": "basic"}}\n```')


def support_email(rng, row: Row):
    first, last = rng.choice(FIRST), rng.choice(LAST)
    mail = row.real("email", real_email(rng, first, last))
    return (f"Hi, I'm {first} {last} ({mail}). I never received the password reset e-mail, can you resend it?",
            f"Hi {first}, I've resent the reset link to {mail}. If it is not in your inbox within ten minutes, "
            "check the spam folder.")


def two_people(rng, row: Row):
    (f1, l1), (f2, l2) = [(rng.choice(FIRST), rng.choice(LAST)) for _ in range(2)]
    m1, m2 = row.real("email", real_email(rng, f1, l1)), row.real("email", real_email(rng, f2, l2))
    return (f"Draft a short e-mail introducing {f1} ({m1}) to {f2} ({m2}) about the Q3 report.",
            f"To: {m1}, {m2}\nSubject: Introduction: Q3 report\n\nHi {f1} and {f2},\n\n{f1}, meet {f2}, who owns the Q3 "
            f"numbers; {f2}, {f1} is preparing the board deck. You can reach {f1} at {m1}.\n\nBest")


def callback(rng, row: Row):
    phone = row.real("phone", real_phone(rng))
    return (f"Please call me back on {phone} about my order, I'm free after 5pm.",
            f"Sure, a colleague will call you on {phone} after 5pm today.")


def card_dispute(rng, row: Row):
    card = row.real("credit_card", real_card(rng))
    return (f"My card {card} was charged twice for the same order. What should I do?",
            "Sorry about that. Please send us the two transaction dates; we will refund the duplicate charge to the "
            "card it was made with, usually within five working days.")


def refund_iban(rng, row: Row):
    iban = row.real("iban", real_iban(rng))
    return (f"Please refund the deposit to my account {iban}.",
            f"Done: the refund to {iban} will arrive within three working days.")


def password_check(rng, row: Row):
    pw = row.real("password", real_password(rng))
    lead = rng.choice([f"password: {pw}", f"my password is {pw}", f"password={pw}"])
    return (f"Is this a strong password? {lead}",
            f"No. {pw} combines a dictionary word with a number, which password crackers try first. "
            "Use a passphrase of four or more random words, or a password manager.")


def blocked_ip(rng, row: Row):
    ip = row.real("public_ip", public_ip(rng))
    return (f"Your firewall blocks my home server at {ip}, can you whitelist it?",
            f"I've added {ip} to the allow list; connections should work within a few minutes.")


def leaked_key(rng, row: Row):
    key = row.real("api_key", api_key(rng))
    return (f"Why does my script fail? client = Client(key=\"{key}\")",
            "The key may be revoked. Also, never paste a live key into code or chat: rotate it now and load it from "
            "an environment variable.")


def mixed_network(rng, row: Row):
    ip = row.real("public_ip", public_ip(rng))
    router = row.harmless("private_ip", rng.choice(["192.168.1.1", "192.168.0.1", "10.0.0.1"]))
    mask = row.harmless("subnet_mask", "255.255.255.0")
    return (f"My public address is {ip}, how do I forward port 443 to my NAS?",
            f"Open your router's page at http://{router}, add a port forward for TCP 443 to the NAS's private "
            f"address (netmask {mask}), then test https://{ip}/ from outside your network.")


def mixed_payment(rng, row: Row):
    card = row.real("credit_card", real_card(rng))
    test = row.harmless("test_card", rng.choice(DOC_TEST_CARDS))
    return (f"Checkout rejects my card {card}. Is it your system?",
            f"Our checkout works: it accepts the test card {test} in staging. Please ask your bank whether it blocks "
            "online payments.")


def placeholder_addresses(rng, row: Row):
    """Made-up addresses at real domains: harmless in intent, but nothing tells them from a person's."""
    mail = row.harmless("placeholder_email_real_domain*", rng.choice(
        ["your.name@company.com", "name@domain.com", "john.doe@email.com", "user@yourcompany.com", "admin@mysite.com"]))
    return ("Write a regular expression that matches e-mail addresses.",
            f"A practical pattern is `^[\\w.+-]+@[\\w-]+\\.[\\w.-]+$`. It matches {mail} but not `name@` or `@domain`.")


def version_and_public_docs(rng, row: Row):
    version = row.harmless("version_number*", rng.choice(["10.0.19041.1", "4.2.1.0", "1.1.1.1"]))
    site = row.harmless("well_known_public_ip*", rng.choice(["93.184.216.34", "140.82.112.3", "151.101.1.69"]))
    return ("Why does `curl https://example.com` fail on my Windows machine?",
            f"Your build {version} ships an old curl; update Windows. Meanwhile `curl -v` shows whether the name "
            f"resolves (for example.com it was {site} when this was written) and where the TLS handshake stops.")


def hard_real(rng, row: Row):
    """Personal data written the way the patterns do not look for."""
    first, last = rng.choice(FIRST), rng.choice(LAST)
    pick = rng.randrange(3)
    if pick == 0:
        mail = real_email(rng, first, last)
        spelled = row.real("obfuscated_email*", mail.replace("@", " at ").replace(".", " dot "))
        return f"Contact me: {spelled}", "Thanks, we will get in touch."
    if pick == 1:
        bare = row.real("bare_digit_phone*", rng.choice("23456789") + _digits(rng, 9))
        return f"text me at {bare} when it ships", "Will do, we'll text you when the parcel leaves."
    pw = real_password(rng)
    login = row.real("password_in_prose*", pw)
    return f"I log in as {first.lower()} with {login} and get an error 403.", "A 403 means the account lacks the role."


HARMLESS = [validator_suite, git_identity, interfaces_file, firewall_rules, cisco_acl, local_services, stripe_docs,
            sample_record]
REAL = [support_email, two_people, callback, card_dispute, refund_iban, password_check, blocked_ip, leaked_key]
MIXED = [mixed_network, mixed_payment]
#: cases outside what the allowlists and patterns cover (categories marked *): reported, not hidden
HARD = [placeholder_addresses, version_and_public_docs, hard_real]


def planted_rows(n: int, seed: int = 0) -> list[Row]:
    """``n`` rows: 40% harmless templates, 40% real, 10% both, 10% hard cases (categories marked *)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        pick = rng.random()
        make = rng.choice(HARMLESS if pick < 0.4 else REAL if pick < 0.8 else MIXED if pick < 0.9 else HARD)
        row = Row(make.__name__)
        row.prompt, row.response = make(rng, row)
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- runs


def run_stage(config: PiiConfig, prompts: list[str], responses: list[str]) -> tuple[list[str], list[str], Counter]:
    """Masked prompts and responses, and the stage counters, over prompt/response rows."""
    stage = Pii(config, name="pii", run=RunInfo("bench", 0))
    schema = S.record_schema(prompt_response=True)
    out_p, out_r, counters = [], [], Counter()
    for start in range(0, len(prompts), BATCH):
        p, r = prompts[start:start + BATCH], responses[start:start + BATCH]
        n = len(p)
        batch = pa.Table.from_pydict({
            S.ID: [str(start + i) for i in range(n)], S.TEXT: [a + "\n\n" + b for a, b in zip(p, r)],
            S.SYSTEM: [None] * n, S.PROMPT: p, S.RESPONSE: r, S.SOURCE: ["bench"] * n, S.META: [None] * n,
        }, schema=schema)
        out = stage.process(batch, BatchInfo(0, start))
        out_p += out.kept.column(S.PROMPT).to_pylist()
        out_r += out.kept.column(S.RESPONSE).to_pylist()
        counters.update(out.counters)
    return out_p, out_r, counters


def run_v1(prompts: list[str], responses: list[str]) -> tuple[list[str], list[str], Counter]:
    """The stage as it was before instruction data was first-class, with ``fields: [prompt, response]``:
    each field scanned and masked on its own, no allowlists."""
    scanner = PiiScanner(PiiConfig().types)
    found: Counter = Counter()
    out = []
    for texts in (prompts, responses):
        masked = []
        for t in texts:
            m, f = scanner.scan(t)
            masked.append(m)
            found.update(f)
        out.append(masked)
    return out[0], out[1], found


def _occurrences(value: str, text: str) -> int:
    """``value`` as a whole token: not inside a longer number, address or word."""
    return len(re.findall(r"(?<![\w.@+-])" + re.escape(value) + r"(?![\w@]|[.-]\w)", text))


def score(rows: list[Row], prompts: list[str], responses: list[str]) -> dict:
    """Per (kind, category): values planted and values masked. A real value counts as masked when no
    occurrence is left in the row; a harmless one when any occurrence was masked."""
    out: dict = defaultdict(lambda: {"values": 0, "masked": 0})
    for row, p, r in zip(rows, prompts, responses):
        for kind, category, value in row.values:
            before = _occurrences(value, row.prompt + "\n" + row.response)
            after = _occurrences(value, p + "\n" + r)
            masked = after == 0 if kind == "real" else after < before
            out[(kind, category)]["values"] += 1
            out[(kind, category)]["masked"] += int(masked)
    return dict(out)


def _totals(scores: dict, kind: str, hard: bool) -> tuple[int, int]:
    """Values and masked values of one kind; the hard cases (categories marked *) only with ``hard``."""
    vals = [v for (k, c), v in scores.items() if k == kind and (hard or not c.endswith("*"))]
    return sum(v["values"] for v in vals), sum(v["masked"] for v in vals)


def planted(args) -> dict:
    rows = planted_rows(args.rows, args.seed)
    prompts, responses = [r.prompt for r in rows], [r.response for r in rows]
    for r in rows:  # every planted value is in the row as written
        assert all(_occurrences(v, r.prompt + "\n" + r.response) for _, _, v in r.values), r.template
    runs = {
        "default": run_stage(PiiConfig(), prompts, responses),
        "allow: false": run_stage(PiiConfig(allow=False), prompts, responses),
        "v1 (prompt, response)": run_v1(prompts, responses),
    }
    scores = {name: score(rows, p, r) for name, (p, r, _) in runs.items()}
    n_values = Counter(k for r in rows for k, _, _ in r.values)
    print(f"{len(rows):,} planted rows: {n_values['harmless']:,} harmless values, {n_values['real']:,} real values\n")
    names = list(runs)
    print(f"{'kind':<9}{'category':<32}{'values':>8}" + "".join(f"{n:>24}" for n in names))
    for key in sorted(scores["default"]):
        kind, category = key
        cells = "".join(f"{scores[n][key]['masked']:>14,} ({100 * scores[n][key]['masked'] / scores[n][key]['values']:5.1f}%)"
                        for n in names)
        print(f"{kind:<9}{category:<32}{scores['default'][key]['values']:>8,}{cells}")
    summary = {}
    for hard in (False, True):
        scope = "with the hard cases" if hard else "listed categories"
        for n in names:
            hv, hm = _totals(scores[n], "harmless", hard)
            rv, rm = _totals(scores[n], "real", hard)
            summary.setdefault(scope, {})[n] = {"recall": rm / rv, "false_positive_rate": hm / hv, "real_masked": rm,
                                                "real": rv, "harmless_masked": hm, "harmless": hv}
        print(f"\n{scope:<37}" + "".join(f"{n:>24}" for n in names))
        print(f"{'recall (real values masked)':<37}"
              + "".join(f"{100 * summary[scope][n]['recall']:>23.1f}%" for n in names))
        print(f"{'false positives (harmless masked)':<37}"
              + "".join(f"{100 * summary[scope][n]['false_positive_rate']:>23.1f}%" for n in names))
    allowed = {k: v for k, v in runs["default"][2].items() if k.startswith("allowed_")}
    print(f"\nkept by the allowlists (default): {allowed}")
    # what the default still misses or over-masks, for reading
    misses = [(row.template, v) for row, p, r in zip(rows, *runs["default"][:2])
              for kind, _, v in row.values if kind == "real" and _occurrences(v, p + "\n" + r)]
    over = [(row.template, v) for row, p, r in zip(rows, *runs["default"][:2])
            for kind, _, v in row.values if kind == "harmless"
            and _occurrences(v, p + "\n" + r) < _occurrences(v, row.prompt + "\n" + row.response)]
    print(f"real values left (default), first 10 of {len(misses)}: {misses[:10]}")
    print(f"harmless values masked (default), first 10 of {len(over)}: {over[:10]}")
    return {"rows": len(rows), "seed": args.seed, "values": dict(n_values), "summary": summary,
            "per_category": {n: {f"{k}/{c}": v for (k, c), v in s.items()} for n, s in scores.items()},
            "allowed": allowed, "misses": misses[:50], "over_masked": over[:50]}


def real(args) -> dict | None:
    try:
        from sft_data import instruction_rows

        rows = instruction_rows()
    except Exception as e:  # noqa: BLE001 - the man pages are optional: say why and go on
        print(f"\nreal rows skipped: {e}")
        return None
    prompts, responses = [r["prompt"] for r in rows], [r["response"] for r in rows]
    print(f"\n{len(rows):,} real instruction rows (Debian man pages)")
    out = {}
    rng = random.Random(args.seed)
    for name, config in (("default", PiiConfig()), ("allow: false", PiiConfig(allow=False))):
        p, r, counters = run_stage(config, prompts, responses)
        changed = [i for i in range(len(rows)) if p[i] != prompts[i] or r[i] != responses[i]]
        finds = {t: counters.get(t, 0) for t in MASK_ORDER}
        allowed = {k: v for k, v in counters.items() if k.startswith("allowed_")}
        print(f"  {name:<13} rows changed {len(changed):,}; masked per type {finds}; kept {allowed}")
        sample = rng.sample(changed, min(args.show, len(changed)))
        for i in sample:
            for before, after in ((prompts[i], p[i]), (responses[i], r[i])):
                if before != after:
                    print(f"      {rows[i]['page']}: {_diff(before, after)}")
        out[name] = {"rows_changed": len(changed), "masked": finds, "allowed": allowed}
    return {"rows": len(rows), **out}


def _diff(before: str, after: str) -> str:
    """The first masked span with a little context."""
    start = next((i for i, (a, b) in enumerate(zip(before, after)) if a != b), 0)
    end_b, end_a = len(before), len(after)
    while end_b > start and end_a > start and before[end_b - 1] == after[end_a - 1]:
        end_b, end_a = end_b - 1, end_a - 1
    ctx = lambda s, a, b: s[max(0, a - 30):a].replace("\n", " ") + "[" + s[a:b] + "]" + s[b:b + 20].replace("\n", " ")  # noqa: E731
    return f"{ctx(before, start, end_b)!r} -> [{after[start:end_a]}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=3000, help="planted rows (default 3000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-real", action="store_true", help="skip the man-page rows")
    ap.add_argument("--show", type=int, default=15, help="changed real rows printed per run, for reading")
    args = ap.parse_args()
    result = {"planted": planted(args)}
    if not args.no_real:
        result["real"] = real(args)
    save_result("pii_sft", result)


if __name__ == "__main__":
    main()
