"""The pii stage on instruction and chat rows: every trained field and turn masked, one value one
placeholder across the row, values that are not personal data kept, report mode, nulls, and a
field list naming a field the rows lack stopped before anything runs."""

from __future__ import annotations

import pyarrow as pa
import pytest

from corpusmill import schema as S
from corpusmill.cli import main
from corpusmill.dataprep.pii import TEST_CARDS, Pii, PiiConfig
from corpusmill.stage import BatchInfo, RunInfo
from tests.conftest import write_jsonl, write_pipeline


def _stage(**options) -> Pii:
    return Pii(PiiConfig(**options), name="pii", run=RunInfo("d", 0))


def _msgs(*turns: tuple[str, str]) -> list[dict]:
    return [{"role": r, "content": c, "extra": None} for r, c in turns]


def _batch(rows: list[dict], *, prompt_response: bool = True, messages: bool = True) -> pa.Table:
    """Rows given as dicts of the columns they use; the rest null."""
    schema = S.record_schema(prompt_response=prompt_response, messages=messages)
    cols = {f.name: [r.get(f.name) for r in rows] for f in schema}
    cols[S.ID] = [str(i) for i in range(len(rows))]
    cols[S.SOURCE] = [f"f:{i}" for i in range(len(rows))]
    cols[S.TEXT] = [r.get(S.TEXT, "stale") for r in rows]
    return pa.Table.from_pydict(cols, schema=schema)


def _run(stage: Pii, batch: pa.Table):
    out = stage.process(batch, BatchInfo(0, 0))
    return out, out.kept.to_pylist()


CHAT = _msgs(
    ("system", "You are the help desk of a bank."),
    ("user", "Hi, I need to update my contact details."),
    ("user", "My new address is ann.lee@gmail.com; my husband raj.patel@yahoo.com keeps his."),
    ("assistant", "Done: we will write to ann.lee@gmail.com from now on, and raj.patel@yahoo.com is unchanged."),
)


def test_a_value_in_the_third_message_and_the_response_gets_one_placeholder():
    out, rows = _run(_stage(), _batch([{S.MESSAGES: CHAT}]))
    contents = [m["content"] for m in rows[0][S.MESSAGES]]
    assert contents[2] == "My new address is <EMAIL_1>; my husband <EMAIL_2> keeps his."
    assert contents[3] == "Done: we will write to <EMAIL_1> from now on, and <EMAIL_2> is unchanged."
    assert contents[:2] == [m["content"] for m in CHAT[:2]]
    assert rows[0][S.TEXT] == "\n".join(contents)  # text re-derived from the masked turns
    assert rows[0]["pii_count"] == 4 and rows[0]["pii_types"] == ["email"]
    assert out.counters == {"email": 4, "rows_with_pii": 1, "in_messages.user": 2, "in_messages.assistant": 2}


def test_a_single_turn_row_shares_placeholders_between_prompt_and_response():
    row = {S.SYSTEM: "Reply to +49 30 1234567 if unsure.",
           S.PROMPT: "Customer jo.b@web.de (card 4556 7375 8689 9855) asks for a refund.",
           S.RESPONSE: "Refunded card 4556-7375-8689-9855 and mailed jo.b@web.de; the hotline is +49 30 1234567."}
    _, rows = _run(_stage(), _batch([row]))
    assert rows[0][S.SYSTEM] == "Reply to <PHONE> if unsure."
    assert rows[0][S.PROMPT] == "Customer <EMAIL> (card <CREDIT_CARD>) asks for a refund."
    # the card printed with other separators is the same value: one placeholder, not two
    assert rows[0][S.RESPONSE] == "Refunded card <CREDIT_CARD> and mailed <EMAIL>; the hotline is <PHONE>."
    assert rows[0][S.TEXT] == "\n\n".join([rows[0][S.SYSTEM], rows[0][S.PROMPT], rows[0][S.RESPONSE]])


def test_a_password_given_in_the_prompt_is_masked_in_the_response():
    row = {S.PROMPT: "Is my password strong enough? password: Tr0ub4dor&3",
           S.RESPONSE: "Tr0ub4dor&3 is short and well known; avoid Tr0ub4dor&3 and use a passphrase."}
    out, rows = _run(_stage(), _batch([row]))
    assert rows[0][S.PROMPT] == "Is my password strong enough? password: <SECRET>"
    assert rows[0][S.RESPONSE] == "<SECRET> is short and well known; avoid <SECRET> and use a passphrase."
    assert "Tr0ub4dor" not in rows[0][S.TEXT]
    assert out.counters["secret"] == 3 and out.counters["in_response"] == 2 and out.counters["in_prompt"] == 1


def test_a_value_inside_a_longer_word_is_not_spread():
    row = {S.PROMPT: "token: Xk29fLq8",
           S.RESPONSE: "The file AXk29fLq8.log is unrelated, Xk29fLq8 is not."}
    _, rows = _run(_stage(), _batch([row]))
    assert rows[0][S.RESPONSE] == "The file AXk29fLq8.log is unrelated, <SECRET> is not."


def test_per_type_placeholders():
    _, rows = _run(_stage(placeholders="per_type"), _batch([{S.MESSAGES: CHAT}]))
    assert rows[0][S.MESSAGES][2]["content"] == "My new address is <EMAIL>; my husband <EMAIL> keeps his."


# (allowlist, a harmless value in a realistic answer, what the value is masked as when the allowlist is off)
ALLOWED = [
    ("example_domains", "assert is_valid_email('jane.doe@example.com')", "<EMAIL>"),
    ("example_domains", "Send it to qa-bot@ci.test or admin@mail.example.org.", "<EMAIL>"),
    ("documentation_ips", "ssh admin@203.0.113.10 -p 2222", "<IP_ADDRESS>"),
    ("documentation_ips", "ping6 2001:db8::1", "<IP_ADDRESS>"),
    ("private_ips", "Open http://192.168.1.1 and set the gateway to 10.0.0.1.", "<IP_ADDRESS>"),
    ("private_ips", "The server listens on 127.0.0.1:8000.", "<IP_ADDRESS>"),
    ("subnet_masks", "address 10.1.1.5\nnetmask 255.255.255.0", "<IP_ADDRESS>"),
    ("subnet_masks", "access-list 10 permit 172.16.0.0 0.0.15.255", "<IP_ADDRESS>"),
    ("test_cards", "In test mode pay with 4242 4242 4242 4242, any future date and any CVC.", "<CREDIT_CARD>"),
    ("test_cards", "Braintree's sandbox accepts 4111111111111111 and Amex 378282246310005.", "<CREDIT_CARD>"),
    ("fictional_phones", "In the script, Joe calls (212) 555-0123.", "<PHONE>"),
    ("fictional_phones", "The drama's number is 020 7946 0321.", "<PHONE>"),
    ("public_dns", "Set the DNS servers to 1.1.1.1 and 8.8.8.8.", "<IP_ADDRESS>"),
]


@pytest.mark.parametrize("allow,response,placeholder", ALLOWED)
def test_values_that_are_not_personal_data_are_kept(allow, response, placeholder):
    batch = _batch([{S.PROMPT: "Show me an example.", S.RESPONSE: response}])
    out, rows = _run(_stage(), batch)
    assert rows[0][S.RESPONSE] == response and rows[0]["pii_count"] == 0
    assert out.counters.get(f"allowed_{allow}", 0) >= 1 and "rows_with_pii" not in out.counters
    out, rows = _run(_stage(allow={allow: False}), batch)
    assert placeholder[:-1] in rows[0][S.RESPONSE], f"{allow} off should mask {response!r}"  # <EMAIL> or <EMAIL_1>
    assert rows[0]["pii_count"] >= 1


def test_allow_false_turns_every_allowlist_off():
    response = "Use user@example.com, 192.168.0.10 and 4242 4242 4242 4242."
    _, rows = _run(_stage(allow=False), _batch([{S.PROMPT: "?", S.RESPONSE: response}]))
    assert rows[0][S.RESPONSE] == "Use <EMAIL>, <IP_ADDRESS> and <CREDIT_CARD>."


def test_real_values_next_to_allowed_ones_are_still_masked():
    response = ("Stripe's 4242 4242 4242 4242 works; your card 5425 2334 3010 9903 was charged. "
                "Your router is 192.168.1.1, your public address 81.2.69.160; call (212) 555-0123 or (415) 867-5309.")
    _, rows = _run(_stage(), _batch([{S.PROMPT: "?", S.RESPONSE: response}]))
    assert rows[0][S.RESPONSE] == (
        "Stripe's 4242 4242 4242 4242 works; your card <CREDIT_CARD> was charged. "
        "Your router is 192.168.1.1, your public address <IP_ADDRESS>; call (212) 555-0123 or <PHONE>.")


def test_the_users_own_values_and_domains_are_kept():
    row = {S.PROMPT: "Who do I contact?",
           S.RESPONSE: "Write to support@acme-shop.de or sales@acme-shop.de, call +49 30 9876543, not ida@gmx.de."}
    _, rows = _run(_stage(allow_values=["@acme-shop.de", "+49 (30) 987 65 43"]), _batch([row]))
    assert rows[0][S.RESPONSE] == row[S.RESPONSE].replace("ida@gmx.de", "<EMAIL>")


def test_the_well_known_test_cards_are_listed():
    for card in ("4242424242424242", "4111111111111111", "5555555555554444", "378282246310005", "6011111111111117",
                 "4000056655665556", "2223003122003222", "5105105105105100"):
        assert card in TEST_CARDS


def test_report_mode_changes_no_text():
    row = {S.PROMPT: "Mail ann.lee@gmail.com, password: Tr0ub4dor&3", S.RESPONSE: "Sent to ann.lee@gmail.com."}
    batch = _batch([row, {S.MESSAGES: CHAT}, {S.TEXT: "nothing here"}])
    out, rows = _run(_stage(mode="report"), batch)
    for col in (S.TEXT, S.PROMPT, S.RESPONSE, S.MESSAGES):
        assert out.kept.column(col).equals(batch.column(col))
    assert [r["pii_count"] for r in rows] == [3, 4, 0]
    assert [r["pii_types"] for r in rows] == [["secret", "email"], ["email"], []]
    assert out.counters["email"] == 6 and out.counters["rows_with_pii"] == 2
    assert out.rejected is None


def test_reject_names_the_fields():
    batch = _batch([{S.MESSAGES: CHAT}, {S.PROMPT: "hi", S.RESPONSE: "hello"}])
    out = _stage(action="reject").process(batch, BatchInfo(0, 0))
    assert out.kept.column(S.PROMPT).to_pylist() == ["hi"]
    reject = out.rejected.to_pylist()[0]
    assert reject["reason"] == "pii_found"
    assert reject["detail"] == "found email=4 in messages.user, messages.assistant"


def test_null_fields_and_mixed_rows():
    rows = [
        {S.TEXT: "plain row: write to kim@posteo.de"},  # no prompt, no messages
        {S.PROMPT: "Call +49 30 1234567", S.RESPONSE: None},  # a response some rows lack
        {S.PROMPT: None, S.MESSAGES: [{"role": "user", "content": None, "extra": None},
                                      {"role": "assistant", "content": "ok, kim@posteo.de", "extra": None}]},
        {S.MESSAGES: None, S.TEXT: ""},
    ]
    out, got = _run(_stage(), _batch(rows))
    assert got[0][S.TEXT] == "plain row: write to <EMAIL>"
    assert got[1][S.PROMPT] == "Call <PHONE>" and got[1][S.RESPONSE] is None
    assert [m["content"] for m in got[2][S.MESSAGES]] == [None, "ok, <EMAIL>"]
    assert [r["pii_count"] for r in got] == [1, 1, 1, 0]
    # an explicit list of fields some rows leave null: those rows are skipped, never an error
    out, got = _run(_stage(fields=["prompt", "response"]), _batch(rows))
    assert got[1][S.PROMPT] == "Call <PHONE>"
    assert got[2][S.MESSAGES][1]["content"] == "ok, kim@posteo.de"
    assert got[0][S.TEXT] == rows[0][S.TEXT]


def test_roles_narrow_what_is_masked():
    _, rows = _run(_stage(fields=["messages.user"]), _batch([{S.MESSAGES: CHAT}]))
    contents = [m["content"] for m in rows[0][S.MESSAGES]]
    assert "<EMAIL_1>" in contents[2] and contents[3] == CHAT[3]["content"]


def test_text_on_instruction_rows_means_the_fields_it_is_derived_from():
    row = {S.PROMPT: "Reach me at kim@posteo.de", S.RESPONSE: "Noted."}
    _, rows = _run(_stage(fields=["text"]), _batch([row], messages=False))
    assert rows[0][S.PROMPT] == "Reach me at <EMAIL>"
    assert rows[0][S.TEXT] == "Reach me at <EMAIL>\n\nNoted."


def _chat_pipeline(tmp_path, pii_options) -> dict:
    write_jsonl(tmp_path / "chat.jsonl", [{"messages": [{"role": "user", "content": "Mail ann.lee@gmail.com"},
                                                        {"role": "assistant", "content": "Done, ann.lee@gmail.com."}]},
                                          {"messages": [{"role": "user", "content": "Hi"},
                                                        {"role": "assistant", "content": "Hello!"}]}])
    return {"dataset": "chat", "inputs": [{"path": "chat.jsonl", "messages_field": "messages"}],
            "steps": [{"pii": pii_options}]}


def test_chat_rows_with_a_text_prompt_response_field_list_stop_with_exit_2(tmp_path, capsys):
    path = write_pipeline(tmp_path / "p.yaml", _chat_pipeline(tmp_path, {"fields": ["text", "prompt", "response"]}))
    assert main(["run", str(path), "--store", str(tmp_path / "store"), "--workers", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "fields lists 'prompt', 'response', which these rows do not have" in err
    assert "valid here: text, trained, messages, messages.system, messages.user" in err
    assert not (tmp_path / "store" / "chat").exists()


def test_chat_pipeline_masks_every_turn(tmp_path, run):
    result = run(_chat_pipeline(tmp_path, {}))
    rows = result.version.read_split("all").to_pylist()
    assert [m["content"] for m in rows[0][S.MESSAGES]] == ["Mail <EMAIL>", "Done, <EMAIL>."]
    assert rows[0][S.TEXT] == "Mail <EMAIL>\nDone, <EMAIL>."
    stage = next(s for s in result.manifest["stages"] if s["name"] == "pii")
    assert stage["counters"] == {"email": 2, "rows_with_pii": 1, "in_messages.user": 1, "in_messages.assistant": 1}


def test_check_reports_a_field_the_rows_lack():
    chat = S.record_schema(messages=True)
    (problem,) = _stage(fields=["text", "prompt", "response"]).check(chat)
    assert problem.startswith("stage 'pii': fields lists 'prompt', 'response', which these rows do not have")
    assert "messages_field" not in problem and "prompt_field" in problem  # names the fix
    assert _stage(fields=["messages.user", "text"]).check(chat) == []
    assert _stage().check(chat) == [] and _stage().check(S.record_schema()) == []


@pytest.mark.parametrize("text,expected", [
    ("Is this safe? My password is Summer2023!.", "Is this safe? My password is <SECRET>."),
    ("Set the passphrase to h4ppy-h0rse)", "Set the passphrase to <SECRET>)"),
    ("Mein Passwort ist Sommer2024, bitte", "Mein Passwort ist <SECRET>, bitte"),
])
def test_a_password_given_in_prose_is_masked(text, expected):
    _, rows = _run(_stage(), _batch([{S.PROMPT: text, S.RESPONSE: "ok"}]))
    assert rows[0][S.PROMPT] == expected


# phrases from the Debian man pages (bench/bench_pii_sft.py's real rows) that look like a type and are not
@pytest.mark.parametrize("text", [
    "The password is required, and changing the password to something stronger helps.",
    "Utiliser l'heure en secondes à partir de 00:00:00 1970-01-01 UTC.",  # a date after a time, not a phone
    "This option is passed to patch (since dpkg 1.15.5.4).",  # a release, not an address
    "Cela implique (depuis dpkg\xa01.15.8.6) une décompression.",
    "Starts user manager instances as user@UID.service, with the user's number.",  # systemd units, not mail
    "Drop-ins go to /etc/systemd/system/systemd-nspawn@foobar.service.d/50-network.conf.",
])
def test_man_page_lookalikes_survive(text):
    _, rows = _run(_stage(allow=False), _batch([{S.PROMPT: "Explain.", S.RESPONSE: text}]))
    assert rows[0][S.RESPONSE] == text and rows[0]["pii_count"] == 0
