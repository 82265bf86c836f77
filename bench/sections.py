"""The benchmark sections and what each one hands back.

A section is a module ``bench/<name>.py`` with a ``TITLE`` and a function
``run(opts: Options) -> Report``: a JSON-ready dict of what it measured and the lines
of its table (markdown, so that it reads in a terminal and pastes into the README).
Deterministic counts come first; wall-time figures are ratios or medians from the same
run, never compared across runs by a test.

To add a section, add its name to ``SECTIONS`` (one line) and write the module.  A
listed section whose module does not exist yet is reported as skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SECTIONS", "Options", "Report"]

# In the order they run: bench/<name>.py each.
SECTIONS: tuple[str, ...] = (
    "engine",  # 1. engine throughput and the raw-Unicorn ceiling
    "baseline",  # 1b. the pure-Python engine against the code before issue 15
    "ttff",  # 2. time to first finding
    "scaling",  # 3. campaign workers / Dask
    "protocols",  # 4. what one static_key_enable() costs under each protocol, N CPUs
    "memory",  # 5. peak RSS of a worker process with N CPUs
    "models",  # 6. the Arm data-memory model against sc, per scenario, and litmus
    "ablation",  # 7. testbed ablate jump_label_kick, end to end
    "litmus",  # 8. instruction-fetch litmus tests, the testbed against herd7
    "search",  # 9. exhaustive search of brk_refcount_sync, both models
)


@dataclass(frozen=True)
class Options:
    quick: bool = False  # a small subset, for the test that keeps the code alive
    out: Path = Path(__file__).resolve().parent / "results"  # where files (plots) go
    baseline: str = ""  # the commit the baseline section compares with ("": its own)


@dataclass
class Report:
    data: dict[str, Any]
    lines: list[str] = field(default_factory=list)
