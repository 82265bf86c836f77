"""Static-key incoherence: a CPU saw the key's new state yet ran an old branch.

The workload reads, with a load-acquire, a flag the patcher sets once
``static_key_enable()`` has returned, then runs through the key's sites and logs which
way each went.  After ``static_key_enable()`` returns, every site of the key must behave
as enabled on every CPU that can see that it returned: a CPU that read the flag set and
still took a site's old (NOP) path is the race v6.11's ``kick_all_cpus_sync()`` closed.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from ..findings import Finding, OracleName
from ..isa import NOP, b
from ..machine import Machine


@dataclass(frozen=True)
class SiteLog:
    """Where one worker CPU logs its iterations, and how an entry is laid out."""

    cpu: int
    log: int  # address of its u32 entries
    iterations: int
    sites: Sequence[tuple[str, str]]  # (site symbol, its "yes" target symbol), log order
    flag_shift: int = 12  # entry = flag << flag_shift | path of site k << 4 * (n - 1 - k)


OLD_PATH, NEW_PATH = 1, 2


def static_key_incoherence(m: Machine, logs: Sequence[SiteLog]) -> list[Finding]:
    """One finding per (CPU, site) whose old path ran after the flag was seen set."""
    findings: list[Finding] = []
    for wl in logs:
        entries = struct.unpack(f"<{wl.iterations}I", m.read(wl.log, 4 * wl.iterations))
        if 0 in entries:
            entries = entries[:entries.index(0)]  # the worker did not get that far
        # The iterations that read the flag set: only they can show the race (the flag is
        # set late in most runs, so each site looks at a few entries, not all).
        flagged = [(i, e) for i, e in enumerate(entries) if e >> wl.flag_shift == 1]
        if not flagged:
            continue
        n = len(wl.sites)
        for k, (site_sym, yes_sym) in enumerate(wl.sites):
            shift = 4 * (n - 1 - k)
            for i, entry in flagged:
                if (entry >> shift) & 0xF == OLD_PATH:
                    site = m.addr(site_sym)
                    # The steps at which the CPU ran the site, in order: the blocks of
                    # its ground-truth log that hold it (trace.expand, without
                    # expanding every block into instructions)
                    runs = [step for step, start, end in m.logs()[wl.cpu]
                            if 0 <= start <= site < end]
                    findings.append(Finding(
                        OracleName.STATIC_KEY_INCOHERENCE,
                        f"CPU{wl.cpu} saw static_key_enable() return (flag read with a "
                        f"load-acquire) and then ran the old NOP at "
                        f"{m.image.symbolize(site)} (iteration {i})",
                        cpu=wl.cpu, addr=site, words=(NOP, b(site, m.addr(yes_sym))),
                        step=runs[i] if i < len(runs) else -1))
                    break
    return findings
