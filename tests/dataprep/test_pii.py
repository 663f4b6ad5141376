"""The pii stage: each type masked where it is real, left alone where it only looks like it,
counted per type in the manifest and per row in pii_count, or rejected with its types."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from corpusmill.dataprep.pii import PATTERNS, PREFILTERS, Pii, PiiConfig, PiiScanner, iban_ok, luhn_ok
from corpusmill.errors import ConfigError
from corpusmill.stage import BatchInfo, RunInfo
from tests.conftest import write_jsonl

ALL = PiiScanner(PiiConfig().types)

# (text, text after masking) -- one realistic sentence per way a type shows up
POSITIVES = {
    "email": [
        ("Please write to jane.doe+billing@example.co.uk before Friday.", "Please write to <EMAIL> before Friday."),
        ("-- Daniel Burrows <dburrows@debian.org>", "-- Daniel Burrows <<EMAIL>>"),
        ("Contact: J.Smith@mail.example-corp.com.", "Contact: <EMAIL>."),
        ("Room 5 jane@example.org, room 6 joe@example.org", "Room 5 <EMAIL>, room 6 <EMAIL>"),
        ('From: "magilla" <magilla_@poczta.onet.pl>', 'From: "magilla" <<EMAIL>>'),
        ("-- ap1+@andrew.cmu.edu (Andrew C. Plotkin)", "-- <EMAIL> (Andrew C. Plotkin)"),
    ],
    "phone": [
        ("Call me on +49 30 1234567 after six.", "Call me on <PHONE> after six."),
        ("Our hotline +1 (555) 123-4567 is open 24/7.", "Our hotline <PHONE> is open 24/7."),
        ("From abroad dial 0044 20 7946 0958.", "From abroad dial <PHONE>."),
        ("The office number is (415) 555-2671, ext. 12.", "The office number is <PHONE>, ext. 12."),
        ("Fax 415-555-2671 or 415.555.2671", "Fax <PHONE> or <PHONE>"),
        ("-- Steven Wright\n(415-555-2671)", "-- Steven Wright\n(<PHONE>)"),
        ("Büro Berlin: 030 1234567", "Büro Berlin: <PHONE>"),
        ("Appelez le 06 12 34 56 78 demain.", "Appelez le <PHONE> demain."),
        ("Tel.: 089 / 12 34 56", "Tel.: <PHONE>"),
        ("GSM +48 501 19 22 59", "GSM <PHONE>"),
    ],
    "ip_address": [
        ("Failed login from 192.168.1.20 at midnight.", "Failed login from <IP_ADDRESS> at midnight."),
        ("curl http://10.0.0.1:8080/health", "curl http://<IP_ADDRESS>:8080/health"),
        ("[~scholzo@217.89.81.34] has joined #debian", "[~scholzo@<IP_ADDRESS>] has joined #debian"),
        ("The host 2001:db8:85a3::8a2e:370:7334 answered.", "The host <IP_ADDRESS> answered."),
        ("link-local fe80::1ff:fe23:4567:890a only", "link-local <IP_ADDRESS> only"),
    ],
    "credit_card": [
        ("Card 4111 1111 1111 1111 was declined.", "Card <CREDIT_CARD> was declined."),
        ("Charge 5500-0000-0000-0004 instead.", "Charge <CREDIT_CARD> instead."),
        ("amex:378282246310005", "amex:<CREDIT_CARD>"),
        ("Amex 3782 822463 10005 exp 12/27", "Amex <CREDIT_CARD> exp 12/27"),
    ],
    "iban": [
        ("Please transfer to DE89 3704 0044 0532 0130 00, BIC COBADEFFXXX.",
         "Please transfer to <IBAN>, BIC COBADEFFXXX."),
        ("IBAN GB82WEST12345698765432 (Westminster)", "IBAN <IBAN> (Westminster)"),
        ("Konto: AT61 1904 3002 3457 3201", "Konto: <IBAN>"),
        ("Pay to FR14 2004 1010 0505 0001 3M02 606 BIC PSSTFRPPXXX", "Pay to <IBAN> BIC PSSTFRPPXXX"),
    ],
    "secret": [
        ("aws_access_key_id = AKIAIOSFODNN7EXAMPLE", "aws_access_key_id = <SECRET>"),
        ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "aws_secret_access_key = <SECRET>"),
        ("Authorization: Bearer 4f9c2b7e1a8d4e6f9b0c3d2e1f0a9b8c", "Authorization: Bearer <SECRET>"),
        ("token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
         "token=<SECRET>"),
        ("git clone https://ghp_1234567890abcdefghijABCDEFGHIJ123456@github.com/org/repo",
         "git clone https://<SECRET>@github.com/org/repo"),
        ("SLACK_TOKEN: xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "SLACK_TOKEN: <SECRET>"),
        ("stripe.api_key = 'sk_live_4eC39HqLyjWDarjtT1zdp7dc'", "stripe.api_key = '<SECRET>'"),
        ("OPENAI_API_KEY=sk-proj-abcDEF1234567890ghiJKLmnop", "OPENAI_API_KEY=<SECRET>"),
        ("key AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY in the app", "key <SECRET> in the app"),
        ('{"api_key": "a1b2c3d4e5f6"}', '{"api_key": "<SECRET>"}'),
        ("password: hunter22", "password: <SECRET>"),
        ("export API_KEY=ZNxmoVhgiOKitXNSLcMy", "export API_KEY=<SECRET>"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo\n4lgOEePzNm0tRgeLezV6ffAt0gunVTLw\n"
         "-----END RSA PRIVATE KEY-----\nthanks", "<SECRET>\nthanks"),
    ],
}

# texts that look like a type but are not one: each must come out unchanged
HARD_NEGATIVES = {
    "email": [
        "Use logo@2x.png on retina screens.",
        "Thanks @maria and @john for the review.",
        "Mail goes to root@localhost on this box.",
        "Decorators: @property and @staticmethod.",
    ],
    "phone": [
        "Invoice 2231 for order 1234567890 was paid.",
        "The meeting is on 2024-03-12, or was it 12.03.2024, or 12/03/2024?",
        "Population 3 645 000 in 2019.",
        "The ISBN is 978-3-16-148410-0.",
        "Dump: ff ff ff 00 30 da 03 46 28 08 06 ff",
        "Scores 09:15-17:30, version 2.0.1, call 911, room 101.",
        "It costs 1,234.56 EUR and weighs 0.75 kg.",
    ],
    "ip_address": [
        "Upgrade to version 1.2.3.4 today.",
        "Now on v2.0.0.1 and build 10.0.19041.1.",
        "Section 2.4.3.5 covers this.",
        "The OID 1.3.6.1.4.1.2021 is assigned.",
        "999.12.1.1 is not an address, neither is 1.2.3.",
        "irssi-text-0.7.98.4/src builds fine.",
        "It is 12:30:45 and the ratio is 16:9; std::vector<int> works.",
        "MAC 00:1A:2B:3C:4D:5E is on the label.",
    ],
    "credit_card": [
        "Card 4111 1111 1111 1112 fails the checksum.",
        "Tracking number 1Z999AA10123456784.",
        "Order 9780306406157 shipped.",
        "The account 0000 0000 0000 0000 is a placeholder.",
        "Not DE89 3704 0044 0532 0130 01 either.",
        "Timestamp 1700000000123 in ms.",
    ],
    "iban": [
        "Wrong checksum: DE89 3704 0044 0532 0130 01.",
        "Too short: DE89 3704 0044 0532 0130.",
        "Model XY12 ABCD 1234 is discontinued.",
        "The flight LH12 3456 7890 ABCD lands soon.",
    ],
    "secret": [
        "The bearer of bad news arrived.",
        "Read the risk-assessment-framework-document first.",
        "The password is required; reset your password: see the FAQ.",
        "A token: gesture of goodwill.",
        "The api_key parameter is documented below.",
        "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----",
        "Use sk-learn style names like task-force-meeting-notes.",
    ],
}


@pytest.mark.parametrize("kind,text,expected", [(k, t, e) for k, v in POSITIVES.items() for t, e in v])
def test_each_type_is_masked(kind, text, expected):
    masked, found = ALL.scan(text)
    assert masked == expected
    assert set(found) == {kind}
    # the RE2 pre-filter never hides a find: the row reaches the Python pass
    assert pc.match_substring_regex(pa.array([text]), PREFILTERS[kind])[0].as_py()


@pytest.mark.parametrize("kind,text", [(k, t) for k, v in HARD_NEGATIVES.items() for t in v])
def test_lookalikes_survive(kind, text):
    masked, found = ALL.scan(text)
    assert masked == text, f"{kind} look-alike was changed: {masked!r}"
    assert not found


def test_only_the_enabled_types_are_masked():
    text = "Mail jane@example.org or call +49 30 1234567 from 192.168.1.20."
    masked, found = PiiScanner(["email", "ip_address"]).scan(text)
    assert masked == "Mail <EMAIL> or call +49 30 1234567 from <IP_ADDRESS>."
    assert dict(found) == {"email": 1, "ip_address": 1}


def test_luhn_and_iban_checksums():
    assert luhn_ok("4111111111111111") and luhn_ok("378282246310005") and luhn_ok("6011111111111117")
    assert not luhn_ok("4111111111111112") and not luhn_ok("378282246310006")
    assert iban_ok("DE89370400440532013000") and iban_ok("GB82WEST12345698765432") and iban_ok("NO9386011117947")
    assert not iban_ok("DE89370400440532013001")  # checksum
    assert not iban_ok("DE8937040044053201300")  # length for DE
    assert not iban_ok("ZZ89370400440532013000")  # no such country


def _pipeline(tmp_path, rows, **options):
    write_jsonl(tmp_path / "raw" / "support.jsonl", rows)
    return {"dataset": "support", "inputs": [{"path": "raw/support.jsonl", "id_field": "id"}],
            "steps": [{"pii": options}]}


TICKETS = [
    {"id": "t1", "text": "Hi, I am Jane (jane.doe@gmail.com, +44 20 3123 4567). Please refund card 4556 7375 8689 9855."},
    {"id": "t2", "text": "The export crashed after the upgrade to version 1.2.3.4 on 2024-03-12."},
    {"id": "t3", "text": "Our server 185.23.41.7 rejects the key AKIAIOSFODNN7EXAMPLE since Monday."},
    {"id": "t4", "text": "Thanks, everything works again. Invoice 2231 is paid."},
    {"id": "t5", "text": "Refund to DE89 3704 0044 0532 0130 00 please, or mail billing@acme-shop.de."},
]


def test_pipeline_masks_and_counts(tmp_path, run):
    result = run(_pipeline(tmp_path, TICKETS))
    m = result.manifest
    assert m["counts"]["kept"] == 5 and "pii" not in m["counts"]["rejected"]
    stage = next(s for s in m["stages"] if s["name"] == "pii")
    assert stage["counters"] == {"email": 2, "phone": 1, "credit_card": 1, "ip_address": 1, "iban": 1, "secret": 1,
                                 "rows_with_pii": 3, "in_text": 7}
    rows = {r["id"]: r for r in result.version.read_split("all").to_pylist()}
    assert rows["t1"]["text"] == "Hi, I am Jane (<EMAIL>, <PHONE>). Please refund card <CREDIT_CARD>."
    assert rows["t2"]["text"] == TICKETS[1]["text"]
    assert rows["t3"]["text"] == "Our server <IP_ADDRESS> rejects the key <SECRET> since Monday."
    assert rows["t5"]["text"] == "Refund to <IBAN> please, or mail <EMAIL>."
    assert {k: r["pii_count"] for k, r in rows.items()} == {"t1": 3, "t2": 0, "t3": 2, "t4": 0, "t5": 2}


def test_pipeline_rejects_rows_with_pii(tmp_path, run):
    result = run(_pipeline(tmp_path, TICKETS, action="reject", types=["email", "phone", "credit_card"]))
    m = result.manifest
    assert m["counts"]["rejected"]["pii"] == {"pii_found": 2}
    assert sorted(result.version.read_split("all").column("id").to_pylist()) == ["t2", "t3", "t4"]
    rejects = {r["id"]: r for r in result.version.read_rejects().to_pylist()}
    assert rejects["t1"]["reason"] == "pii_found"
    assert rejects["t1"]["detail"] == "found email=1, credit_card=1, phone=1 in text"
    assert rejects["t1"]["text"] == TICKETS[0]["text"]  # the reject shows what was found, unmasked
    assert rejects["t1"]["pii_count"] == 3
    assert rejects["t5"]["detail"] == "found email=1 in text"  # the IBAN is not a requested type


def test_prompt_and_response_are_scanned(tmp_path, run):
    rows = [{"q": "My email is sam@outlook.com, why no reply?", "a": "Sorry! We wrote to sam@outlook.com and +1 (555) 123-4567."},
            {"q": "How do I export to CSV?", "a": "Open the menu and choose Export."}]
    write_jsonl(tmp_path / "qa.jsonl", rows)
    config = {"dataset": "qa", "inputs": [{"path": "qa.jsonl", "text_field": "q", "prompt_field": "q", "response_field": "a"}],
              "steps": [{"pii": {"fields": ["prompt", "response"]}}]}
    out = run(config).version.read_split("all").to_pylist()
    assert out[0]["prompt"] == "My email is <EMAIL>, why no reply?"
    assert out[0]["response"] == "Sorry! We wrote to <EMAIL> and <PHONE>."
    assert out[0]["text"] == out[0]["prompt"] + "\n\n" + out[0]["response"]  # text is derived from the masked fields
    assert [r["pii_count"] for r in out] == [3, 0]


def test_only_prefiltered_rows_reach_python(monkeypatch):
    stage = Pii(PiiConfig(), name="pii", run=RunInfo("d", 0))
    calls = []
    find = stage.scanner.find
    monkeypatch.setattr(stage.scanner, "find", lambda t: calls.append(t) or find(t))
    clean = [f"Ticket {i}: the export to CSV drops rows with commas in the title." for i in range(500)]
    batch = pa.table({"id": [str(i) for i in range(502)], "text": clean + [TICKETS[0]["text"], TICKETS[2]["text"]]})
    out = stage.process(batch, BatchInfo(0, 0))
    assert calls == [TICKETS[0]["text"], TICKETS[2]["text"]]
    assert out.kept.num_rows == 502 and out.counters["rows_with_pii"] == 2


def test_bad_options_are_reported(tmp_path, run):
    with pytest.raises(ConfigError) as err:
        run(_pipeline(tmp_path, TICKETS, types=["email", "passport"], action="drop"))
    text = str(err.value)
    assert "steps[0].pii.types[1]:" in text and "(got 'passport')" in text
    assert "steps[0].pii.action: Input should be 'mask', 'reject' or 'report' (got 'drop')" in text


def test_missing_field_names_the_fix(tmp_path, run):
    with pytest.raises(ConfigError, match="prompt_field"):
        run(_pipeline(tmp_path, TICKETS, fields=["text", "prompt"]))


def test_every_pattern_type_has_a_prefilter():
    assert {p.type for p in PATTERNS} == set(PREFILTERS) == set(PiiConfig().types)
