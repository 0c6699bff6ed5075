"""The FastAGI protocol without I/O: headers, replies (520 blocks, HANGUP lines), quoting."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callsec_ari.agi.adapter import call_started
from callsec_ari.agi.protocol import (
    HANGUP_LINE,
    AgiArgumentError,
    AgiProtocolError,
    AgiReply,
    HeaderParser,
    ReplyParser,
    format_command,
    media_command,
    parse_args,
    parse_reply_line,
    quote_arg,
)

HEADERS = """agi_network: yes
agi_network_script: capture?fields=card_number,expiry,cvv
agi_request: agi://127.0.0.1:4573/capture?fields=card_number,expiry,cvv&lang=de
agi_channel: PJSIP/carrier-00000001
agi_language: en
agi_type: PJSIP
agi_uniqueid: 1718000000.42
agi_version: 22.10.1
agi_callerid: +4915112345678
agi_calleridname: Jane Doe
agi_accountcode:
agi_context: sandbox
agi_extension: 4000
agi_priority: 2
agi_arg_2: second
agi_arg_1: first

"""


def feed_all(parser: HeaderParser, text: str):
    result = None
    for line in text.splitlines(keepends=True):
        assert result is None, "the header block ended early"
        result = parser.feed(line)
    return result


# --- headers ------------------------------------------------------------------------------

def test_header_block_yields_script_options_args_and_ids():
    request = feed_all(HeaderParser(), HEADERS)
    assert request is not None
    assert request.script == "capture"
    assert request.options == (("fields", "card_number,expiry,cvv"), ("lang", "de"))
    assert request.args == ("first", "second")
    assert request.uniqueid == "1718000000.42"
    assert request.channel == "PJSIP/carrier-00000001"
    assert request.language == "en"
    assert request.callerid == "+4915112345678"
    assert request.headers["agi_accountcode"] == ""


def test_request_repr_never_shows_the_caller_number():
    request = feed_all(HeaderParser(), HEADERS)
    assert "4915112345678" not in repr(request)
    assert "Jane" not in repr(request)


def test_call_started_takes_language_option_over_channel_language():
    request = feed_all(HeaderParser(), HEADERS)
    started = call_started(request, at=1.5)
    assert started.flow == "capture"
    assert started.option("fields") == "card_number,expiry,cvv"
    assert started.language == "de"
    assert started.caller_number == "+4915112345678"
    assert started.at == 1.5


def test_path_without_query_selects_the_flow():
    request = feed_all(HeaderParser(), "agi_request: agi://127.0.0.1:4573/Verify\n"
                                       "agi_uniqueid: 1.2\nagi_callerid: unknown\n\n")
    assert request.script == "verify"
    assert request.options == ()
    assert request.callerid == ""


def test_network_script_is_used_when_agi_request_is_not_a_url():
    request = feed_all(HeaderParser(), "agi_network_script: probe\nagi_request: probe\n"
                                       "agi_uniqueid: 7.1\n\n")
    assert request.script == "probe"


def test_header_lines_with_crlf_are_accepted():
    text = "agi_request: agi://h/probe\r\nagi_uniqueid: 3.3\r\n\r\n"
    request = feed_all(HeaderParser(), text)
    assert request.script == "probe"
    assert request.uniqueid == "3.3"


@pytest.mark.parametrize("line", ["GET / HTTP/1.1\n", "no colon here\n", "agi bad: x\n"])
def test_non_agi_header_line_is_a_protocol_error(line):
    with pytest.raises(AgiProtocolError):
        HeaderParser().feed(line)


def test_header_block_without_uniqueid_is_a_protocol_error():
    parser = HeaderParser()
    parser.feed("agi_request: agi://h/probe\n")
    with pytest.raises(AgiProtocolError):
        parser.feed("\n")


def test_empty_header_block_is_a_protocol_error():
    with pytest.raises(AgiProtocolError):
        HeaderParser().feed("\n")


def test_endless_header_block_is_cut_off():
    parser = HeaderParser(max_lines=3)
    for i in range(3):
        parser.feed(f"agi_x{i}: y\n")
    with pytest.raises(AgiProtocolError):
        parser.feed("agi_x9: y\n")


# --- replies ------------------------------------------------------------------------------

def test_reply_with_data_and_endpos():
    reply = parse_reply_line("200 result=1 (timeout) endpos=1234\n")
    assert (reply.code, reply.result, reply.data, reply.endpos) == (200, "1", "timeout", 1234)
    assert reply.result_int == 1


def test_stream_file_reply_carries_the_key_code_and_offset():
    reply = parse_reply_line("200 result=52 endpos=8000")
    assert reply.result_int == ord("4")
    assert reply.data is None
    assert reply.endpos == 8000


def test_variable_value_keeps_parentheses_and_spaces():
    assert parse_reply_line("200 result=1 (a (b) c)").data == "a (b) c"
    assert parse_reply_line("200 result=1 (x) endpos=5)").data == "x) endpos=5"
    assert parse_reply_line("200 result=1 ()").data == ""


def test_empty_result_and_negative_result():
    assert parse_reply_line("200 result= (timeout)").result_int is None
    assert parse_reply_line("200 result=-1 endpos=0").result_int == -1


@pytest.mark.parametrize("line,code", [
    ("510 Invalid or unknown command", 510),
    ("511 Command Not Permitted on a dead channel or intercept routine", 511),
    ("520 Invalid command syntax.  Proper usage not available.", 520),
])
def test_error_codes(line, code):
    assert parse_reply_line(line).code == code


@pytest.mark.parametrize("line", ["", "hello", "20 result=1", "200-result=1", "HANGUP"])
def test_garbage_is_not_a_reply(line):
    with pytest.raises(AgiProtocolError):
        parse_reply_line(line)


def test_reply_repr_hides_the_result_which_may_be_typed_digits():
    reply = parse_reply_line("200 result=4111111111111111 (timeout)")
    assert "4111" not in repr(reply)


def test_multiline_520_is_one_reply_with_its_usage():
    parser = ReplyParser()
    lines = [
        "520-Invalid command syntax.  Proper usage follows:\n",
        " Usage: STREAM FILE <filename> <escape_digits> [sample offset]\n",
        "\n",
        "200 result=1 looks like a reply but is usage text\n",
        "HANGUP\n",
        "520 End of proper usage.\n",
    ]
    out = [parser.feed(line) for line in lines]
    assert out[:-1] == [None] * 5
    reply = out[-1]
    assert isinstance(reply, AgiReply)
    assert reply.code == 520
    assert reply.usage[0].startswith(" Usage: STREAM FILE")
    follow = parser.feed("200 result=0\n")
    assert isinstance(follow, AgiReply) and follow.result == "0"


def test_hangup_line_is_not_a_reply_and_the_next_reply_pairs():
    parser = ReplyParser()
    assert parser.feed("HANGUP\n") is HANGUP_LINE
    reply = parser.feed("200 result=1 (alpha)\n")
    assert isinstance(reply, AgiReply) and reply.data == "alpha"


def test_hangup_line_then_dead_channel_reply():
    parser = ReplyParser()
    assert parser.feed("HANGUP") is HANGUP_LINE
    reply = parser.feed("511 Command Not Permitted on a dead channel or intercept routine")
    assert isinstance(reply, AgiReply) and reply.code == 511


# --- commands and quoting -----------------------------------------------------------------

def test_command_quotes_every_argument():
    line = format_command("STREAM FILE", "callsec/welcome", "0123456789*#")
    assert line == b'STREAM FILE "callsec/welcome" "0123456789*#"\n'


def test_quotes_backslashes_and_spaces_are_escaped():
    assert quote_arg('say "hi" \\ there') == '"say \\"hi\\" \\\\ there"'
    assert parse_args(format_command("VERBOSE", 'a "b" \\c', "1").decode()) == \
        ["VERBOSE", 'a "b" \\c', "1"]


def test_empty_argument_survives():
    assert parse_args(format_command("STREAM FILE", "x", "").decode()) == ["STREAM", "FILE", "x", ""]


@pytest.mark.parametrize("bad", ["line\nbreak", "cr\rhere", "nul\0"])
def test_newlines_and_nul_are_rejected(bad):
    with pytest.raises(AgiArgumentError):
        format_command("SET VARIABLE", "X", bad)


@pytest.mark.parametrize("command", ["stream file", "STREAM  FILE", "EXEC;", ""])
def test_command_words_are_validated(command):
    with pytest.raises(AgiArgumentError):
        format_command(command)


def test_overlong_command_is_rejected():
    with pytest.raises(AgiArgumentError):
        format_command("VERBOSE", "x" * 3000)


def test_parse_args_mirrors_asterisk_unquoted_and_escaped_words():
    assert parse_args('EXEC Playback  hello\\ world "a"b') == ["EXEC", "Playback", "hello world", "ab"]


_safe_text = st.text(st.characters(blacklist_characters="\n\r\0", blacklist_categories=("Cs",)),
                     max_size=40)


@given(st.lists(_safe_text, max_size=8))
def test_quoting_round_trips_through_asterisk_parse_args(args):
    line = format_command("SET VARIABLE", *args).decode("utf-8")
    assert line.count("\n") == 1 and line.endswith("\n")
    assert parse_args(line) == ["SET", "VARIABLE", *args]


@given(st.text(alphabet="0123456789*#ABCD", max_size=20))
def test_digit_strings_round_trip(digits):
    assert parse_args(format_command("SAY DIGITS", digits, "#").decode()) == \
        ["SAY", "DIGITS", digits, "#"]


# --- media --------------------------------------------------------------------------------

@pytest.mark.parametrize("uri,expected", [
    ("sound:callsec/welcome", ("STREAM FILE", "callsec/welcome")),
    ("digits:78", ("SAY DIGITS", "78")),
    ("number:12", ("SAY NUMBER", "12")),
    ("characters:ab", ("SAY ALPHA", "ab")),
])
def test_media_uri_maps_to_agi_command(uri, expected):
    assert media_command(uri) == expected


@pytest.mark.parametrize("uri", ["tone:ring", "recording:x", "callsec/welcome", "sound:"])
def test_unsupported_media_is_refused(uri):
    with pytest.raises(AgiArgumentError):
        media_command(uri)
