"""Byte-for-byte verification of a fetcher's Maildir against the corpus it fetched.

Each stored file is matched to its source by the ``X-Bench-Id`` header (the corpus's first
line); what precedes that line is the fetcher's prepended trace data and must be header
fields (and, for peers, optionally an mbox ``From `` line); what follows it must equal
``corpus.expected(raw)`` exactly. Corruption is described, not just counted: the first
differing offset and the length of the source line it falls in.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .corpus import ID_RE, MIB, Message, expected

_FIELD_START = re.compile(rb"[!-9;-~]+:")


@dataclass
class Verdict:
    total: int
    verified: int = 0
    corrupted: int = 0
    missing: int = 0
    duplicates: int = 0
    unidentified: int = 0
    tmp_leftovers: int = 0
    with_prefix: int = 0
    prefix_examples: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    corrupted_long_8191: int = 0  # corrupted messages that have a line over 8,191 bytes
    corrupted_long_1mib: int = 0

    @property
    def ok(self) -> bool:
        return self.verified == self.total and not (
            self.duplicates or self.unidentified or self.corrupted
        )

    def summary(self) -> str:
        text = f"{self.verified}/{self.total}"
        extra = [
            f"{n} {label}"
            for n, label in (
                (self.corrupted, "corrupted"),
                (self.missing, "missing"),
                (self.duplicates, "duplicated"),
                (self.unidentified, "unidentified"),
            )
            if n
        ]
        return text + (f" ({', '.join(extra)})" if extra else "")


def _prefix_fields(prefix: bytes, allow_from_line: bool) -> int | None:
    """Number of header fields in ``prefix``, or None if it is not just header fields."""
    if not prefix:
        return 0
    if not prefix.endswith(b"\n"):
        return None
    lines = prefix[:-1].split(b"\n")
    if allow_from_line and lines[0].startswith(b"From "):
        lines = lines[1:]
    fields = 0
    for line in lines:
        if line[:1] in (b" ", b"\t") and fields:
            continue  # folded continuation of the previous field
        if not _FIELD_START.match(line):
            return None
        fields += 1
    return fields


def _line_length_at(data: bytes, offset: int) -> int:
    start = data.rfind(b"\n", 0, offset) + 1
    end = data.find(b"\n", offset)
    return (len(data) if end < 0 else end) - start


def _describe_difference(actual: bytes, want: bytes) -> str:
    limit = min(len(actual), len(want))
    offset = next(
        (i for i in range(0, limit, 4096) if actual[i : i + 4096] != want[i : i + 4096]), None
    )
    if offset is None:
        offset = limit
    else:
        while actual[offset] == want[offset]:
            offset += 1
    line_len = _line_length_at(want, min(offset, len(want) - 1)) if want else 0
    return (
        f"first difference at byte {offset:,} (in a source line of {line_len:,} bytes); "
        f"stored {len(actual):,} bytes, expected {len(want):,}; "
        f"stored {actual[offset : offset + 12]!r} vs expected {want[offset : offset + 12]!r}"
    )


def _longest_line(data: bytes) -> int:
    return max((len(line) for line in data.split(b"\n")), default=0)


def verify(
    maildir: Path,
    messages: list[Message],
    *,
    max_prefix_fields: int | None,
    allow_from_line: bool = False,
    max_problems: int = 6,
) -> Verdict:
    """Compare every file in ``maildir``/new and /cur with the corpus.

    ``max_prefix_fields``: how many prepended header fields are accepted (0 for the floor,
    1 for our fetch — the contract allows one trace header — None for any number).
    """
    by_id = {m.id: m.raw for m in messages}
    verdict = Verdict(total=len(messages))
    seen: Counter[str] = Counter()
    tmp = maildir / "tmp"
    if tmp.is_dir():
        verdict.tmp_leftovers = len(os.listdir(tmp))
    for path in _stored_files(maildir):
        data = path.read_bytes()
        match = ID_RE.search(data, 0, 256 * 1024)
        if not match or match.group(1).decode() not in by_id:
            verdict.unidentified += 1
            if len(verdict.problems) < max_problems:
                verdict.problems.append(f"{path.name}: no known X-Bench-Id; starts {data[:60]!r}")
            continue
        msg_id = match.group(1).decode()
        seen[msg_id] += 1
        if seen[msg_id] > 1:
            verdict.duplicates += 1
            continue
        prefix, body = data[: match.start()], data[match.start() :]
        want = expected(by_id[msg_id])
        fields = _prefix_fields(prefix, allow_from_line)
        prefix_ok = fields is not None and (
            max_prefix_fields is None or fields <= max_prefix_fields
        )
        if prefix:
            verdict.with_prefix += 1
            if len(verdict.prefix_examples) < 2:
                verdict.prefix_examples.append(prefix[:300].decode("utf-8", "replace"))
        if body == want and prefix_ok:
            verdict.verified += 1
        else:
            _corrupted(verdict, msg_id, prefix, body, want, max_problems=max_problems)
    verdict.missing = sum(1 for m in messages if m.id not in seen)
    return verdict


def _stored_files(maildir: Path) -> list[Path]:
    files = []
    for sub in ("new", "cur"):
        folder = maildir / sub
        if folder.is_dir():
            files += [folder / name for name in sorted(os.listdir(folder))]
    return files


def _corrupted(
    verdict: Verdict, msg_id: str, prefix: bytes, body: bytes, want: bytes, *, max_problems: int
) -> None:
    """Count a stored message that is not the one sent, and say how (the first few)."""
    verdict.corrupted += 1
    longest = _longest_line(want)
    verdict.corrupted_long_8191 += longest > 8191
    verdict.corrupted_long_1mib += longest > MIB
    if len(verdict.problems) < max_problems:
        why = (
            f"unexpected prepended data {prefix[:120]!r}"
            if body == want
            else _describe_difference(body, want)
        )
        verdict.problems.append(f"{msg_id} (longest line {longest:,}): {why}")
