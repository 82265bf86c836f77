"""A perf-style trace decoder, and the decode oracle.

The decoder knows only what perf knows: the initial text image, the guest's
``PERF_RECORD_TEXT_POKE`` records and each CPU's ETM-like trace.  It keeps a code image,
applies each record's new bytes once the trace's time has reached the record's time
(trace before it decodes with the old bytes, after it with the new ones), and walks the
image consuming atoms, indirect targets and exceptions.  By default ("sync" policy) only
a timestamped exception switches the image, since only a context synchronization event
guarantees the CPU fetches the new bytes; the "time" policy, as perf's
``intel_pt_text_poke``, also switches at periodic timestamps.  Either way a record cannot
tell the decoder when a CPU that takes no exception starts running the new instruction,
which is where a PRE/POST pair of records leaves it guessing.

The oracle compares the reconstruction with the ground truth and reports the first
step where they part: the CPU, the address, what the decoder assumed and what ran,
and the nearest text-poke record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .etm import Branch, Element, ElementKind, branch_kind, branch_target
from .findings import Finding, OracleName
from .textpoke import TextPoke

__all__ = ["DecodeError", "Decoded", "decode", "decode_oracle"]

MAX_STRAIGHT = 100_000  # instructions without any trace element: the walk is lost


class DecodeError(Exception):
    """The trace and the image disagree: the decoder cannot go on."""


@dataclass
class Decoded:
    addresses: list[int]  # every instruction the decoder says ran, in order
    words: list[int]  # the word it assumed at each
    error: str = ""  # why it stopped early, if it did


class _Image:
    def __init__(self, text: bytes, base: int, records: Sequence[TextPoke]) -> None:
        self.text = bytearray(text)
        self.base = base
        self.pending = sorted(records, key=lambda r: (r.time, r.offset))
        self.applied = 0

    def advance(self, time: int) -> None:
        while self.applied < len(self.pending) and self.pending[self.applied].time <= time:
            r = self.pending[self.applied]
            off = r.addr - self.base
            if off >= 0 and off + len(r.new) <= len(self.text):
                self.text[off:off + len(r.new)] = r.new
            self.applied += 1

    def word(self, addr: int) -> int:
        off = addr - self.base
        if not 0 <= off <= len(self.text) - 4:
            raise DecodeError(f"walked out of the code image at {addr:#x}")
        return int.from_bytes(self.text[off:off + 4], "little")


def decode(trace: Sequence[Element], text: bytes, base: int,
           records: Sequence[TextPoke], policy: str = "sync") -> Decoded:
    """Reconstruct one CPU's executed addresses from its trace.

    ``policy`` says when a record's new bytes take effect for this CPU:
    ``"time"``: at the first timestamp at or after the record's time (perf's
    intel_pt_text_poke); ``"sync"``: only at a timestamped exception at or after it: a
    CPU is only sure to fetch the new bytes after a context synchronization event, and
    neither a periodic timestamp nor the start of the trace is one.
    """
    if policy not in ("time", "sync"):
        raise ValueError(f"unknown decode policy {policy!r}")
    out = Decoded([], [])
    if not trace:
        return out
    image = _Image(text, base, records)
    first = trace[0]
    if first.kind is not ElementKind.START:
        out.error = "the trace does not begin with a start element"
        return out
    if policy == "time":
        image.advance(first.time)
    # With "sync", not even the trace start switches images: a CPU that starts after a
    # record still runs what its I-view held, the old bytes, until it synchronizes.
    pc = first.address
    i = 1
    try:
        while i < len(trace):
            el = trace[i]
            if el.kind is ElementKind.TIMESTAMP:
                if policy == "time":
                    image.advance(el.time)
                i += 1
                continue
            if el.kind is ElementKind.EXCEPTION:
                # Walk straight-line code up to where the exception was taken.
                steps = 0
                while pc != el.address:
                    word = image.word(pc)
                    if branch_kind(word) is not Branch.NONE:
                        raise DecodeError(f"a branch at {pc:#x} ({word:#010x}) before the "
                                          f"exception at {el.address:#x}, but no atom")
                    out.addresses.append(pc)
                    out.words.append(word)
                    pc += 4
                    steps += 1
                    if steps > MAX_STRAIGHT:
                        raise DecodeError("no exception address on the straight-line path")
                if el.sync:  # the instruction raised it: it ran, but which word it was
                    out.addresses.append(pc)  # the trace does not say (a BRK, in the
                    out.words.append(-1)  # BRK protocol, is never recorded)
                image.advance(el.time)
                pc = el.target
                i += 1
                continue
            word = image.word(pc)
            out.addresses.append(pc)
            out.words.append(word)
            kind = branch_kind(word)
            if kind is Branch.NONE:
                pc += 4
                continue
            if kind is Branch.INDIRECT:
                if el.kind is not ElementKind.INDIRECT:
                    raise DecodeError(f"indirect branch at {pc:#x} but the trace has {el}")
                pc = el.address
            elif el.kind is ElementKind.ATOM_E:
                pc = branch_target(pc, word)
            elif el.kind is ElementKind.ATOM_N and kind is Branch.CONDITIONAL:
                pc += 4
            else:
                raise DecodeError(f"branch {word:#010x} at {pc:#x} but the trace has {el}")
            i += 1
        # After the last element: straight-line code up to the next branch ran too.
        steps = 0
        while steps < MAX_STRAIGHT:
            word = image.word(pc)
            out.addresses.append(pc)
            out.words.append(word)
            if branch_kind(word) is not Branch.NONE:
                break
            pc += 4
            steps += 1
    except DecodeError as e:
        out.error = str(e)
    return out


def decode_oracle(truth: Sequence[Sequence[tuple[int, int, int]]],
                  traces: Sequence[Sequence[Element]], text: bytes, base: int,
                  records: Sequence[TextPoke],
                  symbolize: Callable[[int], str] | None = None,
                  policy: str = "sync") -> list[Finding]:
    """One finding per CPU whose reconstruction differs from what it really ran."""
    sym: Callable[[int], str] = symbolize or (lambda a: f"{a:#x}")
    findings: list[Finding] = []
    for cpu, (gt, trace) in enumerate(zip(truth, traces, strict=True)):
        got = decode(trace, text, base, records, policy)
        for k, (step, addr, word) in enumerate(gt):
            if k >= len(got.addresses):
                if got.error:
                    findings.append(_finding(cpu, step, addr, word, None, records, sym,
                                             f"decode error: {got.error}"))
                break
            if got.addresses[k] != addr or got.words[k] not in (word, -1):
                findings.append(_finding(cpu, step, addr, word,
                                         (got.addresses[k], got.words[k]), records, sym, ""))
                break
    return findings


def _finding(cpu: int, step: int, addr: int, word: int, assumed: tuple[int, int] | None,
             records: Sequence[TextPoke], sym: Callable[[int], str], why: str) -> Finding:
    name = sym(addr)
    near = min(records, key=lambda r: abs(r.time - step), default=None)
    rec = (f"; nearest text-poke record: {sym(near.addr)} at time {near.time}"
           if near is not None else "; no text-poke records")
    if assumed is None:
        msg = f"CPU{cpu} at step {step}: {why} (really ran {word:#010x} at {name}){rec}"
        words: tuple[int, ...] = (word,)
    else:
        a_addr, a_word = assumed
        msg = (f"CPU{cpu} at step {step}: the decoder assumed {a_word:#010x} at "
               f"{sym(a_addr)} but {word:#010x} ran at {name}{rec}")
        words = (a_word, word)
    return Finding(OracleName.TRACE_DECODE, msg, cpu=cpu, addr=addr, words=words, step=step)
