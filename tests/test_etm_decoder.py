"""The ETM-like trace encoder and the perf-style decoder."""

from __future__ import annotations

import pytest
from conftest import MachineFactory, build_image
from test_machine import BRK_PROGRAM, IPI_PROGRAM, register_break_hook, set_ipi_handler

from testbed import layout
from testbed.asm import Source, link
from testbed.decoder import decode, decode_oracle
from testbed.etm import Element, ElementKind, encode
from testbed.findings import Event, EventKind
from testbed.scheduler import run
from testbed.strategies import RandomWalk
from testbed.textpoke import TextPoke

CODE = """
	.text
	.global start
start:
	mov	x0, #1			// +0x00
	cbz	x1, skip		// +0x04
	mov	x0, #2			// +0x08
skip:
	bl	func			// +0x0c
	nop				// +0x10  (a patch site)
	mov	x3, #3			// +0x14
	b	start			// +0x18
func:
	add	x0, x0, #1		// +0x1c
	ret				// +0x20
"""

E, N = Element(ElementKind.ATOM_E), Element(ElementKind.ATOM_N)


def image() -> tuple[bytes, int]:
    img = link([Source("t.S", CODE)], text_base=layout.TEXT_BASE, data_base=layout.DATA_BASE)
    return img.text, img.addr("start")


def test_decoder_follows_atoms_and_indirect_targets() -> None:
    text, s = image()
    trace = [Element(ElementKind.START, s, time=0), E, E,
             Element(ElementKind.INDIRECT, s + 0x10), E, N]
    got = decode(trace, text, layout.TEXT_BASE, [])
    assert got.error == ""
    offsets = [a - s for a in got.addresses]
    # cbz taken (E), bl (E), ret -> +0x10, b start (E), then cbz not taken (N), ...
    assert offsets == [0x0, 0x4, 0xC, 0x1C, 0x20, 0x10, 0x14, 0x18, 0x0, 0x4, 0x8, 0xC]


def test_decoder_takes_exceptions_sync_and_async() -> None:
    text, s = image()
    vector = s + 0x1C  # any code address will do as a "vector" here
    irq = [Element(ElementKind.START, s, time=0), E,
           Element(ElementKind.EXCEPTION, s + 0x0C, vector, False, 5)]
    got = decode(irq, text, layout.TEXT_BASE, [])
    # The IRQ is taken before +0x0c runs: +0x0c is not in the path.
    assert [a - s for a in got.addresses][:3] == [0x0, 0x4, 0x1C]
    brk = [Element(ElementKind.START, s + 0x10, time=0),
           Element(ElementKind.EXCEPTION, s + 0x10, vector, True, 5)]
    got = decode(brk, text, layout.TEXT_BASE, [])
    assert [a - s for a in got.addresses][:2] == [0x10, 0x1C]  # the BRK at +0x10 ran
    assert got.words[0] == -1  # which word raised it, the trace does not say


def test_text_poke_records_apply_at_their_time() -> None:
    text, s = image()
    b_to_func = (0x14000000 | ((0x1C - 0x10) >> 2)).to_bytes(4, "little")
    poke = TextPoke(0, s + 0x10, (0xD503201F).to_bytes(4, "little"), b_to_func, time=10)
    base = layout.TEXT_BASE
    # perf's rule ("time"): the record applies once the trace's time reaches it.
    trace = [Element(ElementKind.START, s + 0x10, time=9)]
    assert decode(trace, text, base, [poke], "time").addresses[:2] == [s + 0x10, s + 0x14]
    trace = [Element(ElementKind.START, s + 0x10, time=10), E]
    assert decode(trace, text, base, [poke], "time").addresses[:2] == [s + 0x10, s + 0x1C]
    # The default rule ("sync"): only a traced exception after the record switches the
    # CPU to the new bytes; neither the trace start nor a periodic timestamp does.
    trace = [Element(ElementKind.START, s + 0x10, time=10),
             Element(ElementKind.TIMESTAMP, time=11)]
    assert decode(trace, text, base, [poke]).addresses[:2] == [s + 0x10, s + 0x14]
    trace = [Element(ElementKind.START, s + 0x1C, time=10),
             Element(ElementKind.EXCEPTION, s + 0x1C, s + 0x10, False, 12), E]
    assert decode(trace, text, base, [poke]).addresses[:2] == [s + 0x10, s + 0x1C]
    with pytest.raises(ValueError):
        decode(trace, text, base, [poke], "never")


def test_encoder_on_a_hand_written_ground_truth() -> None:
    _, s = image()
    gt = [(1, s, 0), (1, s + 4, 0xB4000041), (1, s + 0xC, 0x94000004), (1, s + 0x1C, 0),
          (2, s + 0x20, 0xD65F03C0), (2, s + 0x10, 0xD503201F),
          (3, s + 0x14, 0), (3, s + 0x1C, 0)]
    events = [Event(3, 0, EventKind.EXCEPTION, s + 0x18, -1, f"vector {s + 0x1C:#x}")]
    trace = encode(gt, events, 0)
    kinds = [str(el) for el in trace]
    assert kinds[0].startswith("start") and kinds[1:3] == ["E", "E"]
    assert trace[3] == Element(ElementKind.INDIRECT, s + 0x10)
    assert trace[4].kind is ElementKind.EXCEPTION and trace[4].address == s + 0x18
    assert not trace[4].sync and trace[4].target == s + 0x1C


@pytest.mark.parametrize("program", ["ipi", "brk"])
def test_round_trip_on_random_schedules_without_patching(make_machine: MachineFactory,
                                                         program: str) -> None:
    if program == "ipi":
        m = make_machine(IPI_PROGRAM, 2, starts=[(0, "t_send", (1,)), (1, "t_receive", ())],
                         setup=set_ipi_handler)
    else:
        m = make_machine(BRK_PROGRAM, 1, starts=[(0, "t_brk", ())],
                         setup=lambda m: register_break_hook(m, "brk_skip", 0x42))
    for seed in range(40):
        result = run(m, RandomWalk(seed, p_irq=0.5), scenario="t")
        gt = result.ground_truth()
        traces = [encode(gt[c], result.events, c, interval=8) for c in range(m.ncpus)]
        assert any(el.kind is ElementKind.EXCEPTION for t in traces for el in t)
        assert decode_oracle(gt, traces, m.model.initial, layout.TEXT_BASE, []) == []
        for c in range(m.ncpus):
            got = decode(traces[c], m.model.initial, layout.TEXT_BASE, [])
            assert got.addresses[:len(gt[c])] == [a for _, a, _ in gt[c]]


def test_the_oracle_names_the_first_divergence() -> None:
    image_ = build_image(CODE)
    s = image_.addr("start")
    text = image_.text
    # The CPU really ran a B at +0x10 (patched), the decoder has no record of it.
    b_word = 0x14000000 | ((0x1C - 0x10) >> 2)
    gt = [[(1, s + 0x10, b_word), (1, s + 0x1C, 0x91000400)]]
    traces = [[Element(ElementKind.START, s + 0x10, time=1), E]]
    found = decode_oracle(gt, traces, text, layout.TEXT_BASE, [], image_.symbolize)
    assert len(found) == 1 and found[0].oracle == "trace-decode"
    assert found[0].addr == s + 0x10 and found[0].words == (0xD503201F, b_word)
    assert "no text-poke records" in found[0].message
