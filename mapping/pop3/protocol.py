"""POP3 as bytes in, events out (RFC 1939 §3, RFC 2449): no sockets, no clock, no Django.

h11's shape. The client says what reply it expects next (``Reader.expect``), hands over
the bytes it received (``receive_data``, ``receive_eof``) and takes events out
(``next_event``) until ``NEED_DATA``:

- ``Status`` for every status line (``+OK``, ``-ERR``, or a SASL continuation ``+ ...``);
- after ``+OK`` to a multi-line command, ``Line`` events (CAPA, LIST, UIDL) or ``Data``
  events (a message body, RETR), then ``End`` with the reply's octet count.

A body is streamed in pieces of whatever arrived, in bounded memory whatever the line
length: dot-stuffing undone, CRLF given as LF, a bare CR left alone. ``End.octets`` is the
RFC 1939 size of what arrived (unstuffed, CRLF line ends), the figure LIST announces.

Whose fault: ``RemoteProtocolError`` when the server broke the protocol (garbage where a
status line belongs, an overlong line, the connection closed mid-reply);
``LocalProtocolError`` when the caller misused the reader.

``BatchProof`` decides which replies of a batch of RETRs may be trusted. It is here, and
not in the client, because it is pure bookkeeping over these events and must be testable
on any byte stream (design.md, "A pipeline trusts framing").
"""

from __future__ import annotations

import enum
import re
from collections import deque
from dataclasses import dataclass, field

CHUNK = 256 * 1024
MAX_LINE = 8192

# A body ends with CRLF "." CRLF (RFC 1939 §3); its first CRLF belongs to the last line.
_TERMINATOR = b"\r\n.\r\n"
# Bytes held back when no terminator is in the buffer: a terminator that straddles the end
# of the buffer starts in its last four bytes.
_HOLD = len(_TERMINATOR) - 1
_OCTETS = re.compile(rb"^\+OK\s+(\d{1,12})\s+octets", re.IGNORECASE)


class Expect(enum.Enum):
    """The shape of the reply a command gets."""

    STATUS = "status"  # one status line: USER, PASS, STAT, DELE, NOOP, QUIT, STLS, AUTH...
    LINES = "lines"  # status, then (after +OK) text lines up to ".": CAPA, LIST, UIDL
    BODY = "body"  # status, then (after +OK) a message body up to ".": RETR


@dataclass(frozen=True, slots=True)
class Status:
    """One status line: +OK (``ok``), -ERR, or a SASL ``continuation`` ("+ ...")."""

    ok: bool
    text: str
    continuation: bool = False
    octets: int | None = None  # "+OK 4027 octets": what the server says the body holds

    @property
    def code(self) -> str | None:
        """The RFC 2449 response code, e.g. "AUTH", "IN-USE", "SYS/TEMP"."""
        match = re.match(r"\[([^\]]+)\]", self.text)
        return match.group(1).upper() if match else None


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a multi-line text reply, unstuffed, without its line end."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Data:
    """A piece of a message body as it is stored: unstuffed, CRLF as LF."""

    data: bytes


@dataclass(frozen=True, slots=True)
class End:
    """The end of a multi-line reply; ``octets`` is its RFC 1939 size."""

    octets: int


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()
Event = Status | Line | Data | End


class RemoteProtocolError(Exception):
    """The server broke the protocol; ``what`` says how, in words without its bytes."""

    def __init__(self, what: str, *, closed: bool = False) -> None:
        super().__init__(what)
        self.what = what
        self.closed = closed


class LocalProtocolError(Exception):
    """The reader was used wrongly (a bug of ours, never the server's)."""


def parse_status(line: bytes) -> Status:
    """A status line (without its line end) as a Status; garbage raises RemoteProtocolError."""
    if line.startswith(b"+OK"):
        found = _OCTETS.match(line)
        octets = int(found.group(1)) if found else None
        return Status(True, line[3:].decode("utf-8", "replace").strip(), octets=octets)
    if line.startswith(b"-ERR"):
        return Status(False, line[4:].decode("utf-8", "replace").strip())
    if line == b"+" or line.startswith(b"+ "):
        return Status(False, line[2:].decode("ascii", "replace"), continuation=True)
    raise RemoteProtocolError("a line that is not a POP3 status line came where one belongs")


class Reader:
    """The client side of a POP3 session's incoming bytes; see the module docstring."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._expected: deque[Expect] = deque()
        self._phase: Expect | None = None  # LINES or BODY while inside a multi-line reply
        self._buf = b""
        self._pos = 0
        self._eof = False
        self._line_start = True
        self._octets = 0
        self._end_next = False  # the body's last Data went out; End comes next

    @property
    def expecting(self) -> int:
        """Replies still to come (the one being read included)."""
        return len(self._expected) + (self._phase is not None)

    @property
    def octets(self) -> int:
        """Octets of the multi-line reply being read, so far."""
        return self._octets

    @property
    def pending(self) -> int:
        """Bytes received but not consumed yet."""
        return len(self._buf) - self._pos

    def expect(self, kind: Expect) -> None:
        """Queue the shape of one more reply (in the order the commands were sent)."""
        self._expected.append(kind)

    def receive_data(self, data: bytes) -> None:
        """Hand over bytes as they came off the wire."""
        if self._eof:
            raise LocalProtocolError("data after the end of the stream")
        if not data:
            return
        # Only the unconsumed tail is copied; it is at most a line or four bytes when the
        # caller reads events until NEED_DATA before receiving more.
        if self._pos >= len(self._buf):
            self._buf = bytes(data)
        else:
            self._buf = self._buf[self._pos :] + data
        self._pos = 0

    def receive_eof(self) -> None:
        """The server closed the connection."""
        self._eof = True

    def next_event(self) -> Event | _NeedData:
        """The next event, or NEED_DATA when the bytes so far do not complete one."""
        if self._phase is Expect.BODY:
            return self._body_event()
        if self._phase is Expect.LINES:
            return self._line_event()
        return self._status_event()

    def _status_event(self) -> Status | _NeedData:
        """The status line of the next expected reply; a +OK opens its lines or body."""
        if not self._expected:
            if self.pending:
                raise RemoteProtocolError("the server sent data nobody asked for")
            raise LocalProtocolError("no reply is expected")
        line = self._take_line()
        if line is None:
            return self._need("before its reply")
        status = parse_status(line)
        kind = self._expected.popleft()
        if kind is not Expect.STATUS:
            if status.continuation:
                raise RemoteProtocolError("a SASL continuation came where a reply belongs")
            if status.ok:
                self._phase, self._line_start, self._octets = kind, True, 0
        return status

    def _line_event(self) -> Line | End | _NeedData:
        """One line of a multi-line reply, dot-unstuffed, or its end."""
        line = self._take_line()
        if line is None:
            return self._need("in the middle of a multi-line reply")
        if line == b".":
            self._phase = None
            return End(self._octets)
        self._octets += len(line) + 2
        return Line(line[1:] if line.startswith(b".") else line)

    # --- lines -----------------------------------------------------------------------

    def _need(self, where: str) -> _NeedData:
        if self._eof:
            raise RemoteProtocolError(f"the server closed the connection {where}", closed=True)
        return NEED_DATA

    def _take_line(self) -> bytes | None:
        """One line without its CRLF, or None if incomplete.

        Only CRLF ends a line (RFC 1939 §3): a reader that also took a bare LF would frame
        a garbled stream differently from the server's own count.
        """
        end = self._buf.find(b"\r\n", self._pos)
        if end < 0:
            if self.pending > self.max_line + 1:
                raise RemoteProtocolError(f"a reply line longer than {self.max_line} bytes")
            return None
        if end - self._pos > self.max_line:
            raise RemoteProtocolError(f"a reply line longer than {self.max_line} bytes")
        line = self._buf[self._pos : end]
        self._pos = end + 2
        return line

    # --- bodies ----------------------------------------------------------------------

    def _body_event(self) -> Data | End | _NeedData:
        while True:
            if self._end_next:
                self._end_next, self._phase = False, None
                return End(self._octets)
            buf, pos = self._buf, self._pos
            if self._line_start and buf.startswith(b".\r\n", pos):
                self._pos = pos + 3
                self._phase = None
                return End(self._octets)
            end = buf.find(_TERMINATOR, pos)
            if end >= 0:
                self._pos = end + len(_TERMINATOR)
                self._end_next = True
                data = self._unstuff(buf[pos : end + 2])
                if data:
                    return Data(data)
                continue
            cut = len(buf) - _HOLD
            if cut > pos and buf[cut - 1] == 0x0D:
                cut -= 1  # never split a CRLF pair across two pieces
            if cut <= pos:
                return self._need("in the middle of a message")
            segment = buf[pos:cut]
            self._pos = cut
            data = self._unstuff(segment)
            self._line_start = segment.endswith(b"\r\n")
            if data:
                return Data(data)

    def _unstuff(self, segment: bytes) -> bytes:
        """Undo dot-stuffing and CRLF in a segment that splits no CRLF; count its octets."""
        if self._line_start and segment.startswith(b"."):
            segment = segment[1:]
        # Stuffing first: removing a dot after CRLF can never make a new CRLF, whereas
        # converting CRLF first would make a bare CR + LF look like a line end.
        segment = segment.replace(b"\r\n.", b"\r\n")
        self._octets += len(segment)
        return segment.replace(b"\r\n", b"\n")


# --- which replies of a batch may be trusted ---------------------------------------------


def exact(octets: int, announced: int | None) -> bool:
    """Whether a body's size matches what the server announced for it.

    The server adds the CRLF a message stored without a final line end needs to be sent
    (RFC 1939 §3), and counts it in neither LIST nor "+OK n octets" (seen with Dovecot
    2.3): two octets more are exact too.
    """
    return announced is not None and octets in (announced, announced + 2)


def size_words(octets: int, announced: int) -> str:
    """'4,027 octets announced, 37,248 received' for a message."""
    return f"{announced:,} octets announced, {octets:,} received"


@dataclass
class Reply:
    """One RETR of a batch: what LIST said, what the reply said and brought."""

    number: int
    listed: int | None
    announced: int | None = None  # from "+OK n octets"
    octets: int | None = None  # set when its body ended
    refused: str | None = None  # the -ERR text
    confirmed: bool = False  # a well-formed status line followed it

    @property
    def complete(self) -> bool:
        return self.octets is not None

    @property
    def exact(self) -> bool:
        return self.complete and (
            exact(self.octets, self.listed) or exact(self.octets, self.announced)
        )


@dataclass
class BatchProof:
    """Which replies of one batch of RETRs may be stored (and, later, deleted).

    One at a time (``pipelined=False``), a reply is proven once the next status line (of
    the next RETR, or of the NOOP sent after the last one) arrives well-formed: the body
    ended where the server meant it to, or the rest of it would stand where that status
    line belongs. Sizes are only evidence then: servers do lie about them.

    Pipelined, a body that runs past its end swallows the next reply and every later reply
    is read one message off, so proof needs more. Only a batch whose stream stayed in step
    to the end (every reply, then the NOOP's +OK where it belongs) proves anything, and then
    from the first reply on for as long as each arrived whole with the size LIST (or its own
    "+OK n octets") announced: everything from the first reply that is not exact on is
    unproven, to be read again one at a time. A batch that fell out of step (time-out, end
    of stream, garbage, a missing reply) proves nothing at all: a cut reply that swallowed
    the next one can land on the announced size by chance (the property tests found one).
    Unproven replies are stored nowhere and deleted nowhere.

    Left to chance, one at a time: a server that ends a body early (an unstuffed "." line)
    and whose next message line happens to read like a status line ("+OK ...") cannot be
    told from a correct one by anybody.
    """

    pipelined: bool
    replies: list[Reply] = field(default_factory=list)
    in_step: bool = True
    problem: str | None = None

    def status(self, number: int, listed: int | None, status: Status) -> Reply:
        """The status line of RETR ``number`` arrived."""
        self._confirm()
        reply = Reply(number, listed, announced=status.octets)
        if not status.ok:
            reply.refused = status.text
        self.replies.append(reply)
        return reply

    def end(self, reply: Reply, octets: int) -> None:
        """The body of ``reply`` ended at its terminating line."""
        reply.octets = octets

    def sentinel(self) -> None:
        """The NOOP sent after the last RETR was answered +OK, in its place."""
        self._confirm()

    def broken(self, why: str) -> None:
        """The stream fell out of step; ``why`` in words."""
        self.in_step = False
        self.problem = self.problem or why

    def _confirm(self) -> None:
        if self.replies:
            self.replies[-1].confirmed = True

    @property
    def proven(self) -> list[Reply]:
        """The replies whose bodies may be stored, in order (refused ones never are)."""
        if not self.pipelined:
            return [r for r in self.replies if r.complete and r.confirmed and r.refused is None]
        if not self.in_step:
            return []
        proven = []
        for reply in self.replies:
            if reply.refused is not None:
                if not reply.confirmed:
                    break
                continue
            if not (reply.exact and reply.confirmed):
                break
            proven.append(reply)
        return proven

    @property
    def unproven(self) -> list[Reply]:
        """Complete replies that are not proven (refused ones aside)."""
        proven = {id(r) for r in self.proven}
        return [r for r in self.replies if r.refused is None and id(r) not in proven]

    def first_inexact(self) -> Reply | None:
        """The first complete reply whose size differs from what was announced."""
        for reply in self.replies:
            if reply.complete and reply.refused is None and not reply.exact:
                return reply
        return None
