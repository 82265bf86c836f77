"""The trace-decode oracle: can a perf-style decoder rebuild what each CPU ran?

Traces come from the run's ground truth (``testbed/etm.py``), records from the guest's
text-poke ring buffer (``testbed/textpoke.py``); the decoder's reconstruction is
checked against what ran (``testbed/decoder.py``).  It judges history, not the final
state (see ``testbed/search.py`` on what that means for state hashing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import layout
from ..findings import Finding, OracleName

if TYPE_CHECKING:
    from ..machine import Machine
    from ..scheduler import RunResult

__all__ = ["TraceDecode", "decode_check"]


def decode_check(m: Machine, result: RunResult) -> list[Finding]:
    """The decode oracle on a finished run: traces from its ground truth, records from
    the guest's ring buffer, the decoder's reconstruction against what ran."""
    from ..decoder import decode_oracle
    from ..etm import encode
    from ..textpoke import RecordError, read_ring
    truth = result.ground_truth()
    traces = [encode(truth[c], result.events, c) for c in range(m.ncpus)]
    try:
        records = read_ring(m)
    except RecordError as e:
        return [Finding(OracleName.PERF_RING,
                        f"the guest's text-poke ring buffer is malformed: {e}",
                        step=m.step_no)]
    return decode_oracle(truth, traces, m.model.initial, layout.TEXT_BASE, records,
                         m.image.symbolize)


@dataclass(frozen=True)
class TraceDecode:
    name: str = OracleName.TRACE_DECODE
    description: str = ("a perf-style decoder, given the traces and text-poke records, "
                        "rebuilt something other than what a CPU ran")
    stage: str = "final"

    def configure(self, machine: Machine, enabled: bool) -> None:
        pass

    def check(self, machine: Machine, result: RunResult,
              raised: Sequence[Finding]) -> list[Finding]:
        return decode_check(machine, result)
