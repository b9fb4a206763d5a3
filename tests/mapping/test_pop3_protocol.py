"""Properties of mapping/pop3/protocol.py (hypothesis), on byte streams, without sockets.

1. Any split of the same bytes gives the same events (adjacent Data pieces joined).
2. Whatever a server sends (random and mutated streams), a reply the batch proof calls
   proven holds exactly what a plain RFC 1939 reader reads for that message from the same
   bytes.
3. For each way a server misframes a reply (a missing terminator, a lone "." line, garbage
   where a status belongs, a reply cut short, a lying size), pipelined or one at a time, no
   proven reply differs from the message the server meant to send.

The default run tries a few hundred examples per property; `-m slow` runs a million.
"""

from __future__ import annotations

import itertools
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mapping.pop3.protocol import (
    NEED_DATA,
    BatchProof,
    Data,
    End,
    Expect,
    Reader,
    RemoteProtocolError,
    Status,
)
from tests.servers.faultpop import wire_body, wire_size

EXAMPLES = int(os.environ.get("AAMAIL_PROPERTY_EXAMPLES", "300"))
PROFILE = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Lines built from the pieces that make framing hard: dots, CR, LF, CRLF, 8-bit bytes.
PIECES = [
    b"a",
    b"Z",
    b".",
    b"..",
    b"\r",
    b"\n",
    b"\r\n",
    b"\x00",
    b"\xff",
    b"\xe9",
    b" ",
    b"x" * 37,
]
messages = st.lists(st.lists(st.sampled_from(PIECES), max_size=25).map(b"".join), max_size=6)


def reply(stored: bytes) -> bytes:
    return b"+OK %d octets\r\n" % wire_size(stored) + wire_body(stored)


def events_of(chunks: list[bytes], kinds: list[Expect]) -> list:
    """Every event of the stream, adjacent Data joined, and how it ended."""
    reader = Reader(max_line=200)
    for kind in kinds:
        reader.expect(kind)
    out, feed = [], iter(chunks)
    try:
        while reader.expecting:
            event = reader.next_event()
            if event is NEED_DATA:
                chunk = next(feed, None)
                if chunk is None:
                    reader.receive_eof()
                else:
                    reader.receive_data(chunk)
                continue
            if isinstance(event, Data) and out and isinstance(out[-1], Data):
                out[-1] = Data(out[-1].data + event.data)
            else:
                out.append(event)
    except RemoteProtocolError as exc:
        out.append(("error", exc.what))
    return out


@st.composite
def split(draw, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@given(data=st.data(), bodies=messages)
@PROFILE
def test_it_gives_the_same_events_whatever_the_split(data, bodies):
    stream = b"".join(reply(body) for body in bodies) + b"+OK\r\n"
    kinds = [Expect.BODY] * len(bodies) + [Expect.STATUS]
    whole = events_of([stream], kinds)
    assert events_of(data.draw(split(stream)), kinds) == whole
    # And the bodies are the messages as stored (a final LF added where one was missing).
    got = [e.data for e in whole if isinstance(e, Data)]
    assert got == [body if body.endswith(b"\n") else body + b"\n" for body in bodies if body]


# --- a batch of RETRs, played against a server that answers each command ------------------


class _Wire:
    """What the server has sent so far, handed to the reader in the given chunk sizes."""

    def __init__(self, reader: Reader, stream: bytes, chunks: list[int]) -> None:
        self.reader, self.stream, self.pos, self.sizes = reader, stream, 0, iter(chunks)

    def event(self):
        """The reader's next event; TimeoutError when it waits for bytes not yet sent."""
        while (found := self.reader.next_event()) is NEED_DATA:
            if self.pos >= len(self.stream):
                raise TimeoutError
            size = max(1, next(self.sizes, 64))
            self.reader.receive_data(self.stream[self.pos : self.pos + size])
            self.pos += size
        return found


def play(replies: list[bytes], listed: list[int], *, pipelined: bool, chunks: list[int]):
    """The client's reading of one batch (RETR 1..n, then NOOP), as mapping.pop3 does it.

    Pipelined, every reply is on its way at once; one at a time, the server sends reply k+1
    only once the client has read reply k to its end (what the client waits for next is
    the server's silence, a time-out, when it runs out). Returns (bodies, proof).
    """
    reader, proof = Reader(max_line=200), BatchProof(pipelined=pipelined)
    sent = len(replies) if pipelined else 1
    wire = _Wire(reader, b"".join(replies[:sent]), chunks)
    event = wire.event
    bodies: dict[int, bytes] = {}

    try:
        for number in range(1, len(replies)):
            if not pipelined and number > 1:
                wire.stream += replies[number - 1]  # the next RETR is sent only now
            reader.expect(Expect.BODY)
            status = event()
            current = proof.status(number, listed[number - 1], status)
            if current.refused is not None:
                continue
            pieces = []
            while not isinstance(found := event(), End):
                pieces.append(found.data)
            proof.end(current, found.octets)
            bodies[number] = b"".join(pieces)
        if not pipelined:
            wire.stream += replies[-1]
        reader.expect(Expect.STATUS)
        if not event().ok:
            raise RemoteProtocolError("-ERR to NOOP")
        proof.sentinel()
    except (RemoteProtocolError, TimeoutError) as exc:
        proof.broken(str(exc) or "time-out")
    return bodies, proof


def rfc_reader(stream: bytes, count: int) -> dict[int, bytes]:
    """A plain, non-streaming RFC 1939 reader: replies in order until one is malformed."""
    lines, out = stream.split(b"\r\n"), {}
    index = 0
    for number in range(1, count + 1):
        if index >= len(lines) - 1:
            break
        status = lines[index]
        index += 1
        if status.startswith(b"-ERR"):
            continue
        if not status.startswith(b"+OK"):
            break
        body = []
        while index < len(lines) - 1 and lines[index] != b".":
            line = lines[index]
            body.append(line[1:] if line.startswith(b".") else line)
            index += 1
        if index >= len(lines) - 1:
            break
        index += 1
        out[number] = b"".join(part + b"\n" for part in body)
    return out


mutations = st.lists(
    st.tuples(st.integers(0, 10_000), st.sampled_from(["drop", "insert", "flip"])),
    max_size=4,
)


def mutate(stream: bytes, changes, inserts: list[bytes]) -> bytes:
    data = bytearray(stream)
    for (at, how), piece in zip(changes, inserts, strict=False):
        at = at % (len(data) + 1)
        if how == "drop" and data:
            del data[at % len(data) : at % len(data) + len(piece)]
        elif how == "insert":
            data[at:at] = piece
        elif data:
            data[at % len(data)] ^= 0x2E
    return bytes(data)


@given(
    bodies=messages.filter(bool),
    changes=mutations,
    inserts=st.lists(st.sampled_from([b".\r\n", b"\r\n.\r\n", b"+OK\r\n", b"-ERR x\r\n", b"\r"])),
    pipelined=st.booleans(),
    chunks=st.lists(st.integers(1, 300), max_size=40),
)
@PROFILE
def test_it_proves_only_what_a_plain_reader_reads_from_the_same_bytes(
    bodies, changes, inserts, pipelined, chunks
):
    stream = mutate(b"".join(reply(body) for body in bodies), changes, inserts)
    listed = [wire_size(body) for body in bodies]
    # A mutated stream arrives all at once (the server went wrong, not the timing).
    got, proof = play_stream(stream, len(bodies), listed, pipelined, chunks)
    reference = rfc_reader(stream + b"+OK\r\n", len(bodies))
    for proven in proof.proven:
        assert got[proven.number] == reference[proven.number]


def play_stream(stream: bytes, count: int, listed, pipelined: bool, chunks):
    """``play`` for a stream that is already on the wire whole (pipelined or not)."""
    reader, proof = Reader(max_line=200), BatchProof(pipelined=pipelined)
    event = _Wire(reader, stream + b"+OK\r\n", chunks).event
    bodies: dict[int, bytes] = {}

    try:
        for number in range(1, count + 1):
            reader.expect(Expect.BODY)
            current = proof.status(number, listed[number - 1], event())
            if current.refused is not None:
                continue
            pieces = []
            while not isinstance(found := event(), End):
                pieces.append(found.data)
            proof.end(current, found.octets)
            bodies[number] = b"".join(pieces)
        reader.expect(Expect.STATUS)
        if not event().ok:
            raise RemoteProtocolError("-ERR to NOOP")
        proof.sentinel()
    except (RemoteProtocolError, TimeoutError) as exc:
        proof.broken(str(exc) or "time-out")
    return bodies, proof


# Message lines that cannot pass for a status line: after a server's own framing bug, a
# line of a message that reads "+OK" where a status line belongs is one, to anybody.
safe_pieces = [p for p in PIECES if not p.startswith((b"+", b"-"))]
safe_messages = st.lists(
    st.lists(st.sampled_from(safe_pieces), min_size=1, max_size=25).map(b"".join),
    min_size=1,
    max_size=6,
)
FAULTS = ["no_terminator", "early_dot", "garbage_status", "cut", "lie_size", "refuse"]


def misframed(body: bytes, how: str) -> tuple[bytes, int]:
    """The reply a broken server sends for ``body``, and the size it announces."""
    size = wire_size(body)
    wire = wire_body(body)
    if how == "no_terminator":
        return b"+OK %d octets\r\n" % size + wire[:-3], size
    if how == "early_dot":
        cut = wire.find(b"\r\n") + 2 if b"\r\n" in wire[:-3] else 0
        return b"+OK %d octets\r\n" % size + wire[:cut] + b".\r\n" + wire[cut:], size
    if how == "garbage_status":
        return b"Welcome, friend\r\n" + wire, size
    if how == "cut":
        return b"+OK %d octets\r\n" % size + wire[: len(wire) // 2], size
    if how == "lie_size":
        return b"+OK %d octets\r\n" % (size // 3 + 7) + wire, size // 3 + 7
    return b"-ERR [SYS/PERM] cannot read it\r\n", size


@given(
    bodies=safe_messages,
    where=st.integers(0, 5),
    how=st.sampled_from(FAULTS),
    pipelined=st.booleans(),
    chunks=st.lists(st.integers(1, 300), max_size=40),
)
@PROFILE
def test_it_never_proves_a_reply_other_than_the_message_meant(
    bodies, where, how, pipelined, chunks
):
    where %= len(bodies)
    replies, listed = [], []
    for index, body in enumerate(bodies):
        if index == where:
            wire, announced = misframed(body, how)
        else:
            wire, announced = reply(body), wire_size(body)
        replies.append(wire)
        listed.append(announced)
    replies.append(b"+OK\r\n")  # the NOOP after the last RETR
    got, proof = play(replies, listed, pipelined=pipelined, chunks=chunks)
    for proven in proof.proven:
        meant = bodies[proven.number - 1]
        assert got[proven.number] == (meant if meant.endswith(b"\n") else meant + b"\n")
    # In step, the untouched replies before the broken one are proven.
    assert {r.number for r in proof.proven} >= set(range(1, where + 1)) or not proof.in_step
    if pipelined and not proof.in_step:
        assert proof.proven == []


def test_it_refuses_garbage_where_a_status_belongs():
    reader = Reader()
    reader.expect(Expect.STATUS)
    reader.receive_data(b"SSH-2.0-OpenSSH_9.2\r\n")
    with pytest.raises(RemoteProtocolError) as caught:
        reader.next_event()
    assert "SSH" not in caught.value.what  # never quoted back


def test_it_reads_capabilities_as_lines():
    reader = Reader()
    reader.expect(Expect.LINES)
    reader.receive_data(b"+OK\r\nUIDL\r\nSASL PLAIN\r\n..odd\r\n.\r\n")
    events = [reader.next_event() for _ in range(5)]
    assert events[0] == Status(True, "")
    assert [e.data for e in events[1:4]] == [b"UIDL", b"SASL PLAIN", b".odd"]
    assert isinstance(events[4], End)


# The slow proof: a million examples in all, split over the three properties (the batch
# properties get most) and run side by side, one process each.
MILLION = {
    "test_it_gives_the_same_events_whatever_the_split": 200_000,
    "test_it_proves_only_what_a_plain_reader_reads_from_the_same_bytes": 400_000,
    "test_it_never_proves_a_reply_other_than_the_message_meant": 400_000,
}


@pytest.mark.slow
@pytest.mark.timeout(4 * 3600)
def test_a_million_examples_of_the_properties():
    """`-m slow`: the properties above, 1,000,000 examples in all, in fresh processes."""
    import subprocess
    import sys

    quiet = ["-q", "-p", "no:cacheprovider", "--timeout=0", "-m", "not slow"]
    pytest_cmd = [sys.executable, "-m", "pytest", *quiet]
    runs = {
        name: subprocess.Popen(
            [*pytest_cmd, f"{__file__}::{name}"],
            env={**os.environ, "AAMAIL_PROPERTY_EXAMPLES": str(examples)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name, examples in MILLION.items()
    }
    failed = {}
    for name, run in runs.items():
        output, _ = run.communicate()
        if run.returncode != 0:
            failed[name] = output[-3000:]
    assert sum(MILLION.values()) >= 1_000_000
    assert not failed, failed
