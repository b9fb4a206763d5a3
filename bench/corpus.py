"""Seeded, deterministic mail corpora for the fetch benchmark.

Three corpora, each a list of ``Message(id, raw)`` where ``raw`` is the file exactly as it is
stored in the ISP's Maildir (LF line endings, no CR and no NUL anywhere):

- ``mixed``: real-mail awkwardness — base64 attachments (76-column lines and unwrapped
  one-line ones), HTML on one long line, lines starting with ``.`` (including a lone ``.``),
  raw 8-bit bytes (UTF-8 and Latin-1) in bodies and some headers, lines over 8,191 bytes,
  a few lines over 1 MiB, ``From `` at the start of body lines, and a few messages without
  a final newline (one ending in ``\\n.``, one in ``\\n.foo``).
- ``small``: many small text messages (some with a small attachment), dot lines, 8-bit.
- ``big``: one large multipart message (base64 attachment plus a 2 MiB one-line HTML part)
  for the memory check.

Every message starts with ``X-Bench-Id: <id>`` so that any fetcher's output file can be
matched back to its source even when the fetcher prepends trace headers.

``expected(raw)`` is what a correct fetcher stores: POP3 (RFC 1939) cannot carry "no final
newline" — Dovecot sends CRLF before the terminating dot — so the stored copy gains a final
LF exactly when the source lacked one. Everything else is byte-identical.
"""

from __future__ import annotations

import base64
import random
import re
from dataclasses import dataclass

ID_HEADER = b"X-Bench-Id: "
_EIGHT_BIT = re.compile(rb"[\x80-\xff]")
ID_RE = re.compile(rb"^X-Bench-Id: ([A-Za-z0-9_-]+)$", re.MULTILINE)

MIB = 1024 * 1024


@dataclass(frozen=True)
class Plan:
    """Sizes of the three corpora (message counts and approximate byte totals)."""

    mixed_count: int
    mixed_bytes: int
    small_count: int
    small_bytes: int
    big_bytes: int


FULL = Plan(1000, 70_000_000, 5000, 21_000_000, 50 * MIB)
QUICK = Plan(100, 7_000_000, 500, 2_100_000, 5 * MIB)


@dataclass(frozen=True)
class Message:
    id: str
    raw: bytes


def expected(raw: bytes) -> bytes:
    """The bytes a correct fetcher stores for a message stored on the server as ``raw``."""
    return raw if raw.endswith(b"\n") else raw + b"\n"


def pop3_octets(raw: bytes) -> int:
    """The octet count the server announces (CRLF line endings, final CRLF added)."""
    body = expected(raw)
    return len(body) + body.count(b"\n")


def max_line(raw: bytes) -> int:
    """Length of the longest line (without its LF)."""
    longest, start = 0, 0
    while True:
        end = raw.find(b"\n", start)
        if end < 0:
            return max(longest, len(raw) - start)
        longest = max(longest, end - start)
        start = end + 1


# --- vocabulary ---------------------------------------------------------------------------

_ASCII_WORDS = (
    b"the of and to in is for on that with as this by from at be are was it an or not "
    b"invoice meeting report delivery quarterly budget customer order shipment schedule "
    b"please find attached regards thanks office server mailbox account password update "
    b"monday tuesday wednesday thursday friday project review draft final version contract "
    b"price quote payment due today tomorrow next week month year team support ticket "
    b"network printer backup restore archive folder document spreadsheet presentation"
).split()
# 8-bit words: UTF-8 and raw Latin-1 (no CR, LF or NUL in any of them).
_EIGHT_BIT_WORDS = [
    "Grüße".encode(),
    "naïve".encode(),
    "café".encode(),
    "Überweisung".encode(),
    "日本語".encode(),
    "Ελληνικά".encode(),
    "résumé".encode("latin-1"),
    "Straße".encode("latin-1"),
    "½€".encode(),
    bytes(range(0xA0, 0xB0)),
]
_DOT_LINES = [b".", b"..", b"...", b".hidden line", b". leading dot and space", b".\t.tab"]
_NAMES = [b"Alice", b"Bob", b"Carol", b"Dave", b"Erin", b"Frank", b"Grace", b"Heidi"]


class _Gen:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def words(self, count: int, eight_bit: bool) -> list[bytes]:
        rng = self.rng
        words = rng.choices(_ASCII_WORDS, k=count)
        if eight_bit:
            for i in rng.sample(range(count), k=max(1, count // 12)):
                words[i] = rng.choice(_EIGHT_BIT_WORDS)
        return words

    def text(self, size: int, *, eight_bit: bool, dots: bool, from_lines: bool) -> bytes:
        """Paragraphs of ~72-column lines, about ``size`` bytes, ending with LF."""
        rng = self.rng
        lines: list[bytes] = []
        total = 0
        words = self.words(max(8, size // 6 + 8), eight_bit)
        pos = 0
        while total < size:
            if pos + 16 > len(words):
                pos = 0
            n = rng.randint(6, 13)
            line = b" ".join(words[pos : pos + n])
            pos += n
            roll = rng.random()
            if dots and roll < 0.06:
                line = rng.choice(_DOT_LINES)
            elif from_lines and roll < 0.08:
                line = b"From here on, " + line
            elif roll < 0.14:
                line = b""
            lines.append(line)
            total += len(line) + 1
        return b"\n".join(lines) + b"\n"

    def long_html_line(self, size: int, eight_bit: bool) -> bytes:
        """One line of HTML (no LF) of about ``size`` bytes."""
        rng = self.rng
        words = self.words(max(16, size // 6), eight_bit)
        parts = [b"<html><body>"]
        total = 12
        pos = 0
        while total < size:
            n = rng.randint(8, 30)
            if pos + n > len(words):
                pos = 0
            chunk = b'<p style="margin:0">' + b" ".join(words[pos : pos + n]) + b"</p>"
            pos += n
            parts.append(chunk)
            total += len(chunk)
        parts.append(b"</body></html>")
        return b"".join(parts)[:size]

    def b64_wrapped(self, size: int) -> bytes:
        """Base64 of random bytes in 76-column lines, about ``size`` bytes, ending with LF."""
        return base64.encodebytes(self.rng.randbytes(max(1, size * 57 // 77)))

    def b64_one_line(self, size: int) -> bytes:
        """Unwrapped base64 (one line, no LF) of about ``size`` bytes."""
        return base64.b64encode(self.rng.randbytes(max(3, size * 3 // 4)))


def _headers(
    rng: random.Random, msg_id: str, content_type: bytes, *, eight_bit_subject: bool
) -> bytes:
    sender, rcpt = rng.sample(_NAMES, 2)
    subject = b" ".join(rng.choices(_ASCII_WORDS, k=rng.randint(3, 8)))
    if eight_bit_subject:
        subject += b" " + rng.choice(_EIGHT_BIT_WORDS)  # raw 8-bit header, as seen in the wild
    day = 1 + rng.randrange(28)
    hour, minute = rng.randrange(24), rng.randrange(60)
    return (
        ID_HEADER + msg_id.encode() + b"\n"
        b"From: " + sender + b" <" + sender.lower() + b"@isp.example>\n"
        b"To: " + rcpt + b" <" + rcpt.lower() + b"@office.example>\n"
        b"Subject: " + subject + b"\n"
        b"Date: Tue, %02d Mar 2026 %02d:%02d:00 +0100\n"
        % (day, hour, minute)
        + b"Message-ID: <"
        + msg_id.encode()
        + b"@bench.aamail.example>\n"
        b"MIME-Version: 1.0\n"
        b"Content-Type: " + content_type + b"\n"
    )


def _multipart(rng: random.Random, parts: list[tuple[bytes, bytes]]) -> tuple[bytes, bytes]:
    """(content type, body) of a multipart/mixed made of (part headers, part body) pairs."""
    boundary = b"=_bench_%016x" % rng.getrandbits(64)
    body = b"This is a multi-part message in MIME format.\n"
    for headers, part in parts:
        body += b"\n--" + boundary + b"\n" + headers + b"\n" + part
        if not part.endswith(b"\n"):
            body += b"\n"
    body += b"\n--" + boundary + b"--\n"
    return b'multipart/mixed; boundary="' + boundary + b'"', body


_TEXT_PART = b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n"
_HTML_PART = b"Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: 8bit\n"


def _attachment_headers(rng: random.Random) -> bytes:
    name = b"file-%04d.%s" % (rng.randrange(10000), rng.choice([b"pdf", b"zip", b"jpg", b"xlsx"]))
    return (
        b'Content-Type: application/octet-stream; name="' + name + b'"\n'
        b"Content-Transfer-Encoding: base64\n"
        b'Content-Disposition: attachment; filename="' + name + b'"\n'
    )


def _message(gen: _Gen, msg_id: str, size: int, kind: str) -> bytes:
    """One message of about ``size`` bytes: kind is text, html, attach, b64line or huge."""
    rng = gen.rng
    eight_bit = rng.random() < 0.35
    dots = rng.random() < 0.5
    from_lines = rng.random() < 0.2
    headers_size = 400
    body_size = max(64, size - headers_size)
    if kind == "text":
        ctype = b"text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit"
        body = gen.text(body_size, eight_bit=eight_bit, dots=dots, from_lines=from_lines)
    elif kind in ("html", "huge"):
        # A short text part, then HTML on one line (the rest of the size), a trailing text.
        intro = gen.text(min(600, body_size // 8), eight_bit=eight_bit, dots=dots, from_lines=False)
        html = gen.long_html_line(max(100, body_size - len(intro) - 300), eight_bit) + b"\n"
        ctype, body = _multipart(rng, [(_TEXT_PART, intro), (_HTML_PART, html)])
    elif kind == "attach":
        intro = gen.text(rng.randint(200, 2000), eight_bit=eight_bit, dots=dots, from_lines=False)
        payload = gen.b64_wrapped(max(64, body_size - len(intro) - 400))
        ctype, body = _multipart(rng, [(_TEXT_PART, intro), (_attachment_headers(rng), payload)])
    elif kind == "b64line":
        intro = gen.text(rng.randint(200, 1000), eight_bit=eight_bit, dots=dots, from_lines=False)
        payload = gen.b64_one_line(max(64, body_size - len(intro) - 400)) + b"\n"
        ctype, body = _multipart(rng, [(_TEXT_PART, intro), (_attachment_headers(rng), payload)])
    else:
        raise ValueError(kind)
    return _headers(rng, msg_id, ctype, eight_bit_subject=eight_bit and rng.random() < 0.3) + (
        b"\n" + body
    )


def _sizes(rng: random.Random, count: int, total: int, low: int, high: int) -> list[int]:
    """``count`` log-normal sizes clipped to [low, high], scaled to add up to about ``total``."""
    weights = [rng.lognormvariate(0, 1.1) for _ in range(count)]
    scale = total / sum(weights)
    sizes = [min(high, max(low, int(w * scale))) for w in weights]
    # One correction pass so clipping does not leave the total far off.
    off = total - sum(sizes)
    free = [i for i, s in enumerate(sizes) if low < s < high]
    for i in free:
        sizes[i] = min(high, max(low, sizes[i] + off // max(1, len(free))))
    return sizes


def _drop_final_newlines(rng: random.Random, messages: list[Message], how_many: int) -> None:
    """Make ``how_many`` messages end without a final newline (two with a dot line last)."""
    picks = rng.sample(range(len(messages)), k=min(how_many, len(messages)))
    for n, i in enumerate(picks):
        raw = messages[i].raw.rstrip(b"\n")
        if n == 0:
            raw += b"\n."  # POP3 must send "..": a lone dot last, without newline
        elif n == 1:
            raw += b"\n.foo"
        messages[i] = Message(messages[i].id, raw)


def mixed(count: int, total: int, seed: int) -> list[Message]:
    """The mixed corpus: ``count`` messages of about ``total`` bytes (see module docstring)."""
    rng = random.Random(f"aamail-bench:{seed}:mixed")
    gen = _Gen(rng)
    huge_count = max(2, count // 200)
    huge_sizes = [rng.randint(int(1.05 * MIB), int(1.6 * MIB)) for _ in range(huge_count)]
    rest = count - huge_count
    sizes = _sizes(rng, rest, max(rest * 800, total - sum(huge_sizes)), 800, 900_000)
    kinds_sizes = [("huge", s) for s in huge_sizes]
    for size in sizes:
        if size < 12_000:
            kind = rng.choices(["text", "attach"], [0.8, 0.2])[0]
        else:
            kind = rng.choices(["text", "html", "attach", "b64line"], [0.15, 0.25, 0.45, 0.15])[0]
        kinds_sizes.append((kind, size))
    rng.shuffle(kinds_sizes)
    messages = [
        Message(f"mixed-{i:05d}", _message(gen, f"mixed-{i:05d}", size, kind))
        for i, (kind, size) in enumerate(kinds_sizes, 1)
    ]
    _drop_final_newlines(rng, messages, max(3, count // 100))
    return messages


def small(count: int, total: int, seed: int) -> list[Message]:
    """The small corpus: ``count`` short messages of about ``total`` bytes."""
    rng = random.Random(f"aamail-bench:{seed}:small")
    gen = _Gen(rng)
    sizes = _sizes(rng, count, total, 500, 40_000)
    messages = []
    for i, size in enumerate(sizes, 1):
        kind = "attach" if size > 3000 and rng.random() < 0.2 else "text"
        messages.append(Message(f"small-{i:05d}", _message(gen, f"small-{i:05d}", size, kind)))
    _drop_final_newlines(rng, messages, max(2, count // 500))
    return messages


def big(size: int, seed: int) -> list[Message]:
    """One message of about ``size`` bytes: text, a 2 MiB one-line HTML part, base64."""
    rng = random.Random(f"aamail-bench:{seed}:big")
    gen = _Gen(rng)
    intro = gen.text(4000, eight_bit=True, dots=True, from_lines=True)
    html_size = min(2 * MIB, size // 8)
    html = gen.long_html_line(html_size, eight_bit=True) + b"\n"
    payload = gen.b64_wrapped(max(1000, size - html_size - 6000))
    ctype, body = _multipart(
        rng, [(_TEXT_PART, intro), (_HTML_PART, html), (_attachment_headers(rng), payload)]
    )
    return [
        Message(
            "big-00001", _headers(rng, "big-00001", ctype, eight_bit_subject=True) + b"\n" + body
        )
    ]


def build(plan: Plan, seed: int) -> dict[str, list[Message]]:
    """All three corpora for ``plan``."""
    return {
        "mixed": mixed(plan.mixed_count, plan.mixed_bytes, seed),
        "small": small(plan.small_count, plan.small_bytes, seed),
        "big": big(plan.big_bytes, seed),
    }


def describe(messages: list[Message]) -> dict[str, int]:
    """Counts of the awkward features, for the report (computed, never assumed)."""
    raws = [m.raw for m in messages]
    longest = [max_line(r) for r in raws]
    return {
        "messages": len(raws),
        "bytes": sum(map(len, raws)),
        "pop3_octets": sum(map(pop3_octets, raws)),
        "line_over_8191": sum(1 for n in longest if n > 8191),
        "line_over_1mib": sum(1 for n in longest if n > MIB),
        "no_final_newline": sum(1 for r in raws if not r.endswith(b"\n")),
        "dot_lines": sum(1 for r in raws if b"\n." in r),
        "eight_bit": sum(1 for r in raws if _EIGHT_BIT.search(r)),
        "longest_line": max(longest, default=0),
    }
