"""Static keys flipped while other CPUs run through their sites.

CPU0 calls ``static_key_enable(&jl_key)`` (three sites, NOP -> B) and then sets
``jl_key_flipped``; the other CPUs loop over the three sites, logging the flag they
read (load-acquire) and the path each site took.

* ``jump_label_nosync``: arm64 v5.0 .. v6.10: each site patched with
  ``aarch64_insn_patch_text_nosync`` and nothing else.  A worker that has seen
  ``static_key_enable()`` return can still run a site's old NOP, since nothing made it
  synchronise its instruction stream: static-key incoherence.
* ``missing_dc`` / ``missing_dc_idc1``: the kick, but a patcher that forgets
  ``DC CVAU``: incoherent with IDC=0, correct with IDC=1.
* ``brk_single_slot`` / ``brk_refcount_sync``: the BRK text-poke protocol of the 2019
  discussion, as sketched (one global slot) and fixed (descriptor, refcount, IPIs).
* ``jump_label_kick``: v6.11 (commit cfb00a357864): ``kick_all_cpus_sync()`` after the
  sites are patched.  Every worker takes the IPI (an exception entry: a context
  synchronization event) before the enable returns, so none can run an old site
  after seeing the flag.
"""

from __future__ import annotations

from typing import ClassVar

from testbed.findings import Finding, OracleName
from testbed.isa import b
from testbed.machine import GuestError, Machine
from testbed.memory import CacheType
from testbed.oracles import SiteLog, brk_emulation, static_key_incoherence
from testbed.scenario import Scenario

SITES = (("jl_site_a", "jl_site_a_yes"), ("jl_site_b", "jl_site_b_yes"),
         ("jl_site_c", "jl_site_c_yes"))
IPI_CALL_FUNC = 1


class JumpLabelNosync(Scenario):
    name = "jump_label_nosync"
    description = "static key flipped with nosync patching, no IPI (arm64 v5.0-v6.10)"
    kernels = ("boot.S", "insn.S", "smp.S", "jump_label.S", "jl_workload.S",
               "broken_patch.S", "text_poke_brk.S", "perf.S")
    ncpus = 3
    cache = CacheType.IDC0
    iterations = 12
    patch_mode = 0  # jump_label_patch_mode: bit 0 kick_all_cpus_sync, bit 1 no DC CVAU
    expect = OracleName.STATIC_KEY_INCOHERENCE
    # Each worker's log is its own (Machine.set_private): searches take its stores as
    # invisible (same outcomes and findings, 2.4-2.7x fewer states under the Arm model:
    # tests/test_private.py).  Random walks do not by default: a worker whose iterations
    # take fewer decisions finishes sooner against the patcher, and fewer of them race
    # (43 of 400 seeds against 177 under sc).
    private_logs = 0
    search_scope: ClassVar[dict[str, int]] = {"iterations": 2, "ncpus": 2, "private_logs": 1}
    skip_smp_mb = 0  # kick_skip_smp_mb: kick_all_cpus_sync() without its smp_mb()
    ablatable = ("kick_all_cpus_sync",)  # `testbed ablate` may drop the kick

    def setup(self, m: Machine) -> None:
        self.prepare_logs(m)
        m.write(m.addr("nr_cpus"), m.ncpus.to_bytes(4, "little"))
        m.write(m.addr("kick_skip_smp_mb"), self.skip_smp_mb.to_bytes(4, "little"))
        m.write(m.addr("jump_label_patch_mode"), self.patch_mode.to_bytes(4, "little"))
        m.write(m.addr("ipi_handlers") + 8 * IPI_CALL_FUNC,
                m.addr("ipi_call_function").to_bytes(8, "little"))
        m.start(0, "jl_patcher", m.addr("jl_key"))
        for cpu in range(1, m.ncpus):
            m.start(cpu, "jl_worker", self.iterations, self._log(m, cpu))
            if self.private_logs:  # its stores there are then no scheduling points
                m.set_private(cpu, self._log(m, cpu), self._LOG_BYTES)
        for site, _ in SITES:  # the key's sites, patched by every protocol
            m.may_patch(site)

    _LOG_BYTES = 4 * 64  # per worker: 64 entries (not a parameter: --set lists none with _)

    def prepare_logs(self, m: Machine) -> None:
        """Where the workers log (before they start): jl_log, room for 7 workers."""
        if not 2 <= m.ncpus <= 8:
            raise GuestError(f"{self.name} runs on 2 to 8 CPUs (jl_log holds 7 workers)")

    def _log(self, m: Machine, cpu: int) -> int:
        return m.addr("jl_log") + 4 * 64 * (cpu - 1)

    def logs(self, m: Machine) -> list[SiteLog]:
        return [SiteLog(cpu, self._log(m, cpu), self.iterations, SITES)
                for cpu in range(1, m.ncpus)]

    def check(self, m: Machine) -> list[Finding]:
        return static_key_incoherence(m, self.logs(m))

    def observe(self, m: Machine) -> dict[str, object]:
        return {"key": m.read_u32("jl_key"), "flipped": m.read_u32("jl_key_flipped")}


class JumpLabelKick(JumpLabelNosync):
    name = "jump_label_kick"
    description = "as jump_label_nosync plus kick_all_cpus_sync() (v6.11, cfb00a357864)"
    patch_mode = 1
    expect = None


class MissingDc(JumpLabelNosync):
    """A patcher without DC CVAU, even with the kick: with IDC=0 the invalidated lines
    refill from a PoU that still holds the old instruction."""

    name = "missing_dc"
    description = "jump labels patched without DC CVAU (with kick), IDC=0: incoherent"
    patch_mode = 3
    expect = OracleName.STATIC_KEY_INCOHERENCE


class MissingDcIdc1(MissingDc):
    name = "missing_dc_idc1"
    description = "as missing_dc on a CPU with CTR_EL0.IDC=1: the clean is not needed"
    cache = CacheType.IDC1
    expect = None


class BrkSingleSlot(JumpLabelNosync):
    """The 2019 BRK sketch as posted: one global {nosync_addr, nosync_insn} slot and no
    IPI.  The key has three sites patched in a loop; a handler that matched the slot's
    address can read the instruction after the patcher published the next site's, and
    emulate it: a B with the wrong offset."""

    name = "brk_single_slot"
    description = "the 2019 BRK text-poke sketch: one global slot, no IPI"
    patch_mode = 4
    # No IPI either: the static-key incoherence of jump_label_nosync shows up too, and
    # a decoder cannot tell when a CPU started running the final instruction.
    expect = (OracleName.BRK_EMULATION, OracleName.STATIC_KEY_INCOHERENCE, OracleName.TRACE_DECODE)
    trace_decode = True
    break_handler = "text_poke_single_handler"
    search_scope: ClassVar[dict[str, int]] = {"iterations": 1, "ncpus": 2, "private_logs": 1}

    def setup(self, m: Machine) -> None:
        hook = (m.addr(self.break_handler), 7, 0)  # {fn, imm, mask}: BRK #7
        m.write(m.addr("break_hooks"), b"".join(v.to_bytes(8, "little") for v in hook))
        super().setup(m)

    def check(self, m: Machine) -> list[Finding]:
        expected = {m.addr(site): b(m.addr(site), m.addr(yes)) for site, yes in SITES}
        return brk_emulation(m, expected) + super().check(m)


class BrkRelease(BrkSingleSlot):
    """The 2019 sketch exactly as posted, on one site patched once:
    ``nosync_insn = insn; smp_store_release(&nosync_addr, tp);`` and a handler that
    reads ``smp_load_acquire(&nosync_addr)`` before ``nosync_insn``.  With one site the
    slot is never reused, so a handler that matched the address reads the instruction
    published with it: clean, under ``arm`` as under ``sc``.

    The site is taken to be module text patched without ``CONFIG_STRICT_MODULE_RWX``,
    where ``patch_map()`` returns the address as it is: no barrier of
    ``aarch64_insn_write`` then stands between the publication and the BRK store
    (``aarch64_insn_write_direct``), so the publication's own ordering is all there is.
    It is judged by the BRK-emulation oracle alone: the sketch has no IPI, so a worker
    may still run the site's old NOP after seeing the flag (``jump_label_nosync``'s
    race), which is not what this pair is about."""

    name = "brk_release"
    description = "the 2019 BRK sketch as posted (release/acquire), one site: clean"
    nr_entries = 1
    direct = 1  # aarch64_insn_write_direct: module text, no fixmap barrier
    expect = None
    trace_decode = False

    def setup(self, m: Machine) -> None:
        m.write(m.addr("jump_label_nr_entries"), self.nr_entries.to_bytes(4, "little"))
        m.write(m.addr("aarch64_insn_write_direct"), self.direct.to_bytes(4, "little"))
        super().setup(m)

    def check(self, m: Machine) -> list[Finding]:
        site, yes = SITES[0]
        return brk_emulation(m, {m.addr(site): b(m.addr(site), m.addr(yes))})


class BrkPlain(BrkRelease):
    """``brk_release`` with a plain store of ``nosync_addr`` and a plain load in the
    handler.  On Arm the handler may read the new address and then the old instruction
    (a message-passing shape with no ordering on either side) and emulate it: a
    BRK-emulation finding under ``arm``; under ``sc`` the instruction is always written
    before the address is seen, and nothing is found.

    Core kernel text is different: ``patch_map()``'s ``set_pte`` ends with
    ``DSB ISHST``, which orders the publication before the BRK store, and a CPU that
    executes the BRK has its later reads ordered after what that store was ordered
    after (fetch rule F1 of ``testbed/armmem.py``): set ``direct=0`` and the plain
    version is clean under ``arm`` too (``tests/test_dataside.py``)."""

    name = "brk_plain"
    description = "brk_release with plain accesses: the handler may see the old insn (arm)"
    patch_mode = 128
    break_handler = "text_poke_plain_handler"
    expect = OracleName.BRK_EMULATION


class BrkRefcountSync(BrkSingleSlot):
    """The fixed protocol: a descriptor per patch with a refcount the handler takes and
    the patcher waits on (x86 text_poke_bp_batch), and kick_all_cpus_sync() after the
    BRK and after the final instruction."""

    name = "brk_refcount_sync"
    description = "BRK text-poke with descriptor + refcount + kick_all_cpus_sync: correct"
    trace_decode = True
    patch_mode = 8
    expect = None
    break_handler = "text_poke_sync_handler"
    brk_ipis = 1
    # `testbed ablate` may drop either kick of the protocol (text_poke_kick calls
    # kick_all_cpus_sync unless brk_ipis is 0): brk_no_sync drops both
    ablatable = ("kick_all_cpus_sync", "text_poke_kick")

    def setup(self, m: Machine) -> None:
        m.write(m.addr("text_poke_brk_ipis"), self.brk_ipis.to_bytes(4, "little"))
        super().setup(m)


class BrkNoSync(BrkRefcountSync):
    """The descriptor and refcount, but no IPI after writing the BRK or the final
    instruction.

    What the testbed found (2000 random schedules, seed 1): the handler never emulates
    a wrong instruction (the per-patch descriptor and the refcount make {addr, insn}
    consistent), but the trace cannot be decoded.  In the fetch model's terms: a CPU's
    I-view moves to the final instruction at a catch-up (rule 7), and without the IPIs
    that catch-up need not be a context synchronization event the trace records (an
    exception): it can be a scheduler's choice, or the ERET of an unrelated exception
    taken before the record.  The CPU then runs the new branch (an E atom) while the
    decoder, which only switches images at a timestamped exception after the record,
    still has the NOP.  The IPIs are what give every CPU a traced synchronization point
    after each write; a CPU that still ran the old NOP after the enable returned
    (static-key incoherence) is possible for the same reason."""

    name = "brk_no_sync"
    description = "BRK text-poke with descriptor + refcount but no IPIs"
    brk_ipis = 0
    expect = (OracleName.TRACE_DECODE, OracleName.STATIC_KEY_INCOHERENCE)


class TextPokePrePost(JumpLabelNosync):
    """Each site patched with aarch64_insn_patch_text_nosync between a PRE and a POST
    PERF_RECORD_TEXT_POKE, no IPI: the alternative to the BRK protocol in 2019.  The
    records bracket the patch, not what the other CPUs execute: a CPU starts running
    the new branch whenever its I-view catches up, with no event in its trace."""

    name = "text_poke_pre_post"
    description = "nosync patches between PRE and POST text-poke records, no IPI"
    patch_mode = 16
    expect = (OracleName.TRACE_DECODE, OracleName.STATIC_KEY_INCOHERENCE)
    trace_decode = True
    search_scope: ClassVar[dict[str, int]] = {"iterations": 1, "ncpus": 2, "private_logs": 1}
