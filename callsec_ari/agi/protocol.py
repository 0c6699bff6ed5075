"""The FastAGI protocol without I/O: the ``agi_*`` header block, reply lines, argument quoting.

Everything here is pure: the server feeds lines in and writes the bytes this module builds.

- Headers: ``agi_key: value`` lines ending with an empty line (:class:`HeaderParser`).
- Replies (:class:`ReplyParser`): ``200 result=1 (timeout) endpos=1234``; ``510``/``511`` lines;
  the multi-line ``520-Invalid command syntax.  Proper usage follows:`` ... ``520 End of proper
  usage.``; and the unsolicited ``HANGUP`` line Asterisk sends when the channel hangs up, which is
  never the reply to a command.
- Commands (:func:`format_command`): every argument is double-quoted with ``\\`` and ``"``
  backslash-escaped, which Asterisk's ``parse_args`` (mirrored by :func:`parse_args`) undoes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar
from urllib.parse import parse_qsl, urlsplit

from callsec_ari.core.errors import CallsecError, ErrorId

#: Asterisk reads a command into a buffer of this size (``AGI_BUF_LEN``), newline included.
MAX_COMMAND_BYTES = 2047
#: Asterisk's ``MAX_ARGS``: words of the command plus its arguments.
MAX_ARGS = 127
MAX_HEADER_LINES = 256
#: Every DTMF key: the escape digits that let a key press interrupt a prompt.
ALL_DTMF_KEYS = "0123456789*#ABCD"


# --- errors -------------------------------------------------------------------------------

class AgiError(CallsecError):
    error_id = ErrorId.AGI_ERROR
    status = 502


class AgiProtocolError(AgiError):
    """The peer sent something that is not FastAGI (or the stream is out of step)."""

    error_id = ErrorId.AGI_PROTOCOL_ERROR


class AgiDisconnected(AgiError):
    """The connection closed before the header block was complete."""

    error_id = ErrorId.AGI_DISCONNECTED


class AgiArgumentError(AgiError):
    """An argument AGI cannot carry (a newline, a NUL) or a command that is too long."""

    error_id = ErrorId.AGI_INVALID_ARGUMENT
    status = 422


class AgiCommandError(AgiError):
    """Asterisk refused or failed a command (``510``, ``520``, ``result=-1``...)."""

    error_id = ErrorId.AGI_COMMAND_FAILED

    def __init__(self, message: str, *, code: int = 0, usage: tuple[str, ...] = ()) -> None:
        super().__init__(message, details={"code": code})
        self.code = code
        self.usage = usage


class AgiHangup(AgiError):
    """The channel hung up (``HANGUP`` line, ``511`` dead channel, ``result=-1``, EOF)."""

    error_id = ErrorId.AGI_HANGUP
    status = 410


# --- headers ------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class AgiRequest:
    """The header block of one FastAGI connection, with the parts callsec uses."""

    #: ``verify`` for ``agi://127.0.0.1:4573/verify`` (lower case, no slashes).
    script: str
    #: The query string as ordered pairs: ``(("fields", "card_number,expiry,cvv"),)``.
    options: tuple[tuple[str, str], ...] = ()
    #: ``agi_arg_1`` ... in order (``AGI(url,arg1,arg2)``).
    args: tuple[str, ...] = ()
    uniqueid: str = ""
    channel: str = ""
    language: str = "en"
    #: Caller ID number: personal data, never logged (excluded from repr).
    callerid: str = field(default="", repr=False)
    headers: MappingProxyType[str, str] = field(
        default_factory=lambda: MappingProxyType({}), repr=False)


def parse_header_line(line: str) -> tuple[str, str]:
    """``'agi_language: en'`` -> ``('agi_language', 'en')``."""
    key, sep, value = line.rstrip("\r\n").partition(":")
    key = key.strip()
    if not sep or not key.startswith("agi_") or not key.replace("_", "").isalnum():
        raise AgiProtocolError("not an AGI header line")
    return key, value.strip()


def parse_request_path(url: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """``agi://h:4573/capture?fields=a,b`` (or ``capture?fields=a,b``) -> script, options."""
    parts = urlsplit(url) if "://" in url else urlsplit("agi://localhost/" + url.lstrip("/"))
    script = parts.path.strip("/").lower()
    options = tuple((k.strip().lower(), v.strip())
                    for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.strip())
    return script, options


def build_request(headers: dict[str, str]) -> AgiRequest:
    uniqueid = headers.get("agi_uniqueid", "")
    if not uniqueid:
        raise AgiProtocolError("the AGI header block has no agi_uniqueid")
    url = headers.get("agi_request", "")
    if "://" not in url:
        url = headers.get("agi_network_script", url)
    script, options = parse_request_path(url)
    numbered = sorted((int(k[8:]), v) for k, v in headers.items()
                      if k.startswith("agi_arg_") and k[8:].isdigit())
    callerid = headers.get("agi_callerid", "")
    return AgiRequest(
        script=script, options=options, args=tuple(v for _, v in numbered), uniqueid=uniqueid,
        channel=headers.get("agi_channel", ""), language=headers.get("agi_language") or "en",
        callerid="" if callerid.lower() in ("unknown", "<unknown>") else callerid,
        headers=MappingProxyType(dict(headers)),
    )


class HeaderParser:
    """Feed header lines; :meth:`feed` returns the request once the empty line arrived."""

    def __init__(self, max_lines: int = MAX_HEADER_LINES) -> None:
        self._headers: dict[str, str] = {}
        self._lines = 0
        self._max = max_lines

    def feed(self, line: str) -> AgiRequest | None:
        if not line.strip("\r\n"):
            if not self._headers:
                raise AgiProtocolError("empty AGI header block")
            return build_request(self._headers)
        self._lines += 1
        if self._lines > self._max:
            raise AgiProtocolError("too many AGI header lines")
        key, value = parse_header_line(line)
        self._headers[key] = value
        return None


# --- replies ------------------------------------------------------------------------------

_REPLY_200 = re.compile(r"^200 result=(?P<result>\S*)(?: \((?P<data>.*)\))?(?P<kv>(?: \w+=\S*)*)$")
_CODE_LINE = re.compile(r"^(?P<code>\d{3})(?P<sep>[ -])(?P<text>.*)$")


@dataclass(frozen=True, kw_only=True)
class AgiReply:
    """One reply. ``result`` and ``data`` may echo what a caller typed: excluded from repr."""

    code: int
    result: str = field(default="", repr=False)
    data: str | None = field(default=None, repr=False)
    endpos: int | None = None
    extra: tuple[tuple[str, str], ...] = ()
    text: str = field(default="", repr=False)
    usage: tuple[str, ...] = field(default=(), repr=False)

    @property
    def result_int(self) -> int | None:
        try:
            return int(self.result)
        except ValueError:
            return None


class HangupLine:
    """The unsolicited ``HANGUP`` line: not a reply; the channel is gone."""

    TEXT: ClassVar[str] = "HANGUP"

    def __repr__(self) -> str:
        return "HANGUP_LINE"


HANGUP_LINE = HangupLine()


def parse_reply_line(line: str) -> AgiReply:
    """Parse a single-line reply (``200 ...``, ``510 ...``, ``511 ...``, ``520 ...``)."""
    line = line.rstrip("\r\n")
    match = _REPLY_200.match(line)
    if match:
        pairs = tuple(tuple(item.split("=", 1)) for item in match["kv"].split())
        extra: tuple[tuple[str, str], ...] = tuple((k, v) for k, v in pairs)
        endpos = dict(extra).get("endpos")
        return AgiReply(code=200, result=match["result"], data=match["data"],
                        endpos=int(endpos) if endpos and endpos.isdigit() else None,
                        extra=extra, text=line)
    coded = _CODE_LINE.match(line)
    if coded is None or coded["sep"] != " ":
        raise AgiProtocolError("not an AGI reply line")
    if coded["code"] == "200":  # a 200 reply in a shape we do not know: keep the result only
        loose = re.match(r"result=(\S*)", coded["text"])
        return AgiReply(code=200, result=loose[1] if loose else "", text=line)
    return AgiReply(code=int(coded["code"]), text=coded["text"])


class ReplyParser:
    """Feed reply lines one by one. :meth:`feed` returns :data:`HANGUP_LINE` for the unsolicited
    hangup notice, an :class:`AgiReply` once a reply is complete, ``None`` inside a multi-line
    ``520-`` block (whose lines up to ``520 End of proper usage.`` all belong to one reply)."""

    def __init__(self) -> None:
        self._block_code: str | None = None
        self._block: list[str] = []

    def feed(self, line: str) -> AgiReply | HangupLine | None:
        line = line.rstrip("\r\n")
        if self._block_code is not None:
            if line.startswith(self._block_code + " "):
                code, usage = int(self._block_code), tuple(self._block[1:])
                first = self._block[0]
                self._block_code, self._block = None, []
                return AgiReply(code=code, text=first, usage=usage)
            self._block.append(line)
            return None
        if line == HangupLine.TEXT:
            return HANGUP_LINE
        coded = _CODE_LINE.match(line)
        if coded and coded["sep"] == "-":
            self._block_code = coded["code"]
            self._block = [coded["text"]]
            return None
        return parse_reply_line(line)


# --- commands -----------------------------------------------------------------------------

_COMMAND_WORDS = re.compile(r"^[A-Z]+(?: [A-Z]+)*$")
_FORBIDDEN = ("\n", "\r", "\0")


def quote_arg(arg: str) -> str:
    """``say "hi"`` -> ``"say \\"hi\\""``. Newlines, carriage returns and NUL are refused: they
    would end the command line early."""
    if any(ch in arg for ch in _FORBIDDEN):
        raise AgiArgumentError("an AGI argument cannot contain a newline, CR or NUL")
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_command(command: str, *args: str) -> bytes:
    """``format_command("STREAM FILE", "callsec/welcome", "0123")`` -> one command line."""
    if not _COMMAND_WORDS.match(command):
        raise AgiArgumentError("an AGI command is upper-case words separated by single spaces")
    if len(command.split()) + len(args) > MAX_ARGS:
        raise AgiArgumentError("too many AGI arguments")
    line = " ".join((command, *(quote_arg(a) for a in args))).encode("utf-8")
    if len(line) > MAX_COMMAND_BYTES - 1:
        raise AgiArgumentError("the AGI command line is too long")
    return line + b"\n"


def parse_args(line: str) -> list[str]:
    """Split a command line exactly as Asterisk's ``res_agi.c`` ``parse_args`` does: blanks
    separate words, double quotes group, a backslash makes the next character literal."""
    argv: list[str] = []
    current: list[str] | None = None
    quoted = escaped = False
    for ch in line.rstrip("\n"):
        if ch == '"' and not escaped:
            quoted = not quoted
            if quoted and current is None:
                current = []
                argv.append("")
            continue
        if ch in " \t" and not quoted and not escaped:
            if current is not None:
                argv[-1] = "".join(current)
            current = None
            continue
        if ch == "\\" and not escaped:
            escaped = True
            continue
        if current is None:
            current = []
            argv.append("")
        current.append(ch)
        escaped = False
    if current is not None:
        argv[-1] = "".join(current)
    return argv


# --- media --------------------------------------------------------------------------------

_MEDIA_COMMANDS = {
    "sound": "STREAM FILE",
    "digits": "SAY DIGITS",
    "number": "SAY NUMBER",
    "characters": "SAY ALPHA",
}


def media_command(uri: str) -> tuple[str, str]:
    """An ARI media URI as the AGI command that plays it: ``sound:callsec/welcome`` ->
    ``("STREAM FILE", "callsec/welcome")``, ``digits:78`` -> ``("SAY DIGITS", "78")``."""
    scheme, sep, target = uri.partition(":")
    command = _MEDIA_COMMANDS.get(scheme)
    if not sep or command is None or not target:
        raise AgiArgumentError(f"no AGI equivalent for media of kind {scheme or '<none>'!r}")
    return command, target
