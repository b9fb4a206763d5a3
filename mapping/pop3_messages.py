"""The commands that act on one message: RETR, streamed into sinks, and DELE (RFC 1939 §5).

Kept apart from ``pop3.py`` because these are the only commands that may fail for one
message and leave the session usable (``Pop3MessageGoneError``: the message is no longer
there), and RETR is the one part that pipelines (RFC 2449 §6.6): several RETR go out
in one send, replies come back in order, and any other failure leaves the stream out of
step. ``MessageCommands`` is mixed into ``pop3.Client`` and uses only the client's wire
layer (``request``, ``_send``, ``_read_reply``, ``_reader``, ``_where``, ``capabilities``,
``_broken``); the byte level of a body is ``ReplyReader.read_body`` in ``pop3_stream.py``.
Callers import ``Sink`` and ``Client`` from ``mapping.pop3``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from itertools import islice
from typing import Protocol

from .pop3_errors import Pop3MessageGoneError, Pop3ProtocolError
from .pop3_stream import StreamClosedError


class Sink(Protocol):
    def write(self, data: bytes, /) -> object: ...


class MessageCommands:
    """RETR and DELE for ``pop3.Client``; see the module docstring for what they need of it."""

    def dele(self, msgno: int) -> None:
        """Mark a message deleted; the server applies it only at QUIT (RFC 1939 §6)."""
        reply = self.request(f"DELE {int(msgno)}")
        if not reply.ok:
            raise Pop3MessageGoneError(
                f"Message {msgno} could not be deleted ({reply.text[:200]}).", msgno=msgno
            )

    def retr_to(self, msgno: int, sink: Sink) -> int:
        """RETR one message into ``sink``; return its octets (CRLF size, like LIST)."""
        done: list[int] = []
        self.retr_many([msgno], lambda n: sink, lambda n, s, octets: done.append(octets))
        return done[0]

    def retr_many(
        self,
        msgnos: Iterable[int],
        open_sink: Callable[[int], Sink],
        on_done: Callable[[int, Sink, int], object],
        *,
        on_error: Callable[[int, Pop3MessageGoneError], object] | None = None,
        on_abort: Callable[[int, Sink], object] | None = None,
        window: int = 64,
    ) -> None:
        """RETR messages in order, pipelined when CAPA says PIPELINING.

        ``open_sink(n)`` is called once the server answered +OK for message n;
        ``on_done(n, sink, octets)`` after its terminating ".". A -ERR for n calls
        ``on_error(n, Pop3MessageGoneError)`` and the stream goes on with the next
        message; without ``on_error`` the first such error is raised once every other
        message has been delivered. Any other exception (network, or raised by a
        callback or sink) stops everything: ``on_abort(n, sink)`` is called for the
        sink that got no ``on_done``, the exception propagates and the session is dead.
        """
        todo = iter([int(n) for n in msgnos])
        if "PIPELINING" not in (self.capabilities or {}):
            window = 1
        in_flight: deque[int] = deque()
        gone: list[Pop3MessageGoneError] = []
        msgno, sink = 0, None
        try:
            while True:
                if len(in_flight) <= window // 2:  # top up in batches: one send per batch
                    batch = list(islice(todo, window - len(in_flight)))
                    if batch:
                        self._send(b"".join(b"RETR %d\r\n" % n for n in batch))
                        in_flight.extend(batch)
                if not in_flight:
                    break
                msgno = in_flight.popleft()
                reply = self._read_reply()
                if not reply.ok:
                    err = Pop3MessageGoneError(
                        f"Message {msgno} is no longer on the server ({reply.text[:200]}).",
                        msgno=msgno,
                    )
                    if on_error is None:
                        gone.append(err)
                    else:
                        on_error(msgno, err)
                    continue
                sink = open_sink(msgno)
                octets = self._read_body(msgno, sink.write)
                done_sink, sink = sink, None
                on_done(msgno, done_sink, octets)
        except BaseException:
            self._broken = True  # replies still in flight: the stream is out of step
            if sink is not None and on_abort is not None:
                on_abort(msgno, sink)
            raise
        if gone:
            raise gone[0]

    def _read_body(self, msgno: int, write: Callable[[bytes], object]) -> int:
        try:
            return self._reader.read_body(write)
        except StreamClosedError:
            raise Pop3ProtocolError(
                f"{self._where} closed the connection in the middle of message {msgno}."
            ) from None
