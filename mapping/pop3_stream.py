"""Byte level of a POP3 session: bounded status lines and streamed, dot-unstuffed bodies.

No I/O of its own (h11 style): ``ReplyReader`` pulls bytes through the ``recv`` callable
it is given and knows nothing of sockets, TLS or errors other than its own two. Kept
apart from ``pop3.py`` so the one tricky loop (RFC 1939 §3 multi-line bodies of any
line length, in bounded memory) can be read and tested on its own.
"""

from __future__ import annotations

from collections.abc import Callable

CHUNK = 256 * 1024

# A body ends with CRLF "." CRLF (RFC 1939 §3); its first CRLF belongs to the last line.
_TERMINATOR = b"\r\n.\r\n"
# Bytes held back when no terminator is in the buffer: any terminator that straddles
# the end of the buffer starts in its last four bytes.
_HOLD = len(_TERMINATOR) - 1


class StreamClosedError(Exception):
    """The peer closed the connection before the expected data arrived."""


class LineTooLongError(Exception):
    """A status or list line exceeded the limit; no POP3 server sends those."""


class ReplyReader:
    """Reads POP3 replies from ``recv(n) -> bytes`` (empty bytes means closed)."""

    def __init__(self, recv: Callable[[int], bytes], chunk: int = CHUNK) -> None:
        self._recv = recv
        self._chunk = chunk
        self._buf = b""
        self._pos = 0

    def pending(self) -> int:
        """Bytes received but not consumed yet."""
        return len(self._buf) - self._pos

    def _fill(self) -> None:
        data = self._recv(self._chunk)
        if not data:
            raise StreamClosedError
        # Only the unconsumed tail is copied, and callers fill only when the item
        # they need is incomplete, so the tail stays small (<= a line or 4 bytes).
        if self._pos >= len(self._buf):
            self._buf = data
        else:
            self._buf = self._buf[self._pos :] + data
        self._pos = 0

    def read_line(self, max_line: int) -> bytes:
        """One line without its line ending; a bare LF is tolerated as the end."""
        while True:
            end = self._buf.find(b"\n", self._pos)
            if end >= 0:
                if end - self._pos > max_line:
                    raise LineTooLongError
                line = self._buf[self._pos : end]
                self._pos = end + 1
                return line[:-1] if line.endswith(b"\r") else line
            if self.pending() > max_line:
                raise LineTooLongError
            self._fill()

    def read_lines(self, max_line: int) -> list[bytes]:
        """A multi-line text response (CAPA, LIST, UIDL) up to its "." line, unstuffed."""
        lines = []
        while (line := self.read_line(max_line)) != b".":
            lines.append(line[1:] if line.startswith(b".") else line)
        return lines

    def read_body(self, write: Callable[[bytes], object]) -> int:
        """Stream one message body to ``write`` as stored bytes; return its octet count.

        Written bytes: the leading "." of stuffed lines removed, CRLF turned into LF,
        a bare CR left alone. Lines of any length pass through in chunks; the octet
        count is the unstuffed size with CRLF endings, the figure LIST reports.
        """
        octets = 0
        line_start = True
        while True:
            buf, pos = self._buf, self._pos
            if line_start and buf.startswith(b".\r\n", pos):
                self._pos = pos + 3
                return octets
            end = buf.find(_TERMINATOR, pos)
            if end >= 0:
                octets += _emit(buf[pos : end + 2], line_start, write)
                self._pos = end + len(_TERMINATOR)
                return octets
            cut = len(buf) - _HOLD
            if cut > pos and buf[cut - 1] == 0x0D:
                cut -= 1  # never split a CRLF pair across two segments
            if cut > pos:
                segment = buf[pos:cut]
                octets += _emit(segment, line_start, write)
                line_start = segment.endswith(b"\r\n")
                self._pos = cut
            self._fill()


def _emit(segment: bytes, line_start: bool, write: Callable[[bytes], object]) -> int:
    """Undo dot-stuffing and CRLF in a segment that splits no CRLF; return CRLF octets."""
    if line_start and segment.startswith(b"."):
        segment = segment[1:]
    # Strip stuffing first: removing a dot after CRLF can never create a new CRLF,
    # whereas converting CRLF first would make a bare CR + LF look like a line end.
    segment = segment.replace(b"\r\n.", b"\r\n")
    if segment:
        write(segment.replace(b"\r\n", b"\n"))
    return len(segment)
