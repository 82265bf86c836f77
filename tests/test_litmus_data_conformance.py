"""The data side judged by the architecture, on a fixed sample of shared/litmus/aarch64-data.

The instrument of issue 13's acceptance (`testbed litmus --verdicts`) run end to end on
a sample that every later step is measured on the same way: every catalogue test herd7
gives a verdict for (79 of 80; ``MP+rel+CSEL-addr`` is a broken link that herd7 cannot
read either) and 40 diy-generated tests, one Allowed and one Forbidden of each family
(picked once, greedily, for the most ordering edges not yet covered: DMB SY/LD/ST, DSB,
ISB, LDAR/STLR, address/data/control dependencies, control+ISB, rfi...), plus two pairs
that the patching code relies on (release/acquire MP and DMB ST + address MP, each with
its allowed twin): 20 Allowed, 20 Forbidden.

Asserted:
- soundness, strictly: no outcome the verdicts forbid is observed, in any test;
- that the summary counts: each test's own JSON line, judged here independently of
  `conformance`, gives the summary's numbers and lists;
- completeness as *reported*: every allowed outcome not observed is listed by name with
  a reason, every incomplete exploration with its reason;
- completeness under the Arm model (the default): the allowed outcomes not observed are
  exactly the known misses of README.md that are in the sample, each with its reason
  (KNOWN_MISSES), so that a regression or a closed gap both fail.

The whole set (1,071 tests) is measured with the command line; see README.md.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from testbed.exploration import Bounds
from testbed.litmus_run import read_verdicts, run_many

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "litmus" / "aarch64-data"

if not DATA.is_dir():  # pragma: no cover - CI always has shared/ beside the clone
    if os.environ.get("CI"):
        raise RuntimeError(f"{DATA} is missing: CI must have shared/ beside the clone")
    pytest.skip(f"{DATA} not found", allow_module_level=True)

CATALOGUE_VERDICTS = DATA / "catalogue" / "herd7.txt"  # README: follow herd7.txt
GENERATED_VERDICTS = DATA / "generated" / "kinds.txt"

GENERATED = (
    # one Allowed, one Forbidden per family (herd7 7.58+1, aarch64.cat)
    "2+2W+dmb.st+rfipa-poap", "2+2W+popl+pola-dataap",
    "3.LB+addr+ctrl+po", "3.LB+addr+data+pos",
    "IRIW+ctrlisb+po", "IRIW+addrs",
    "IRRWIW+dmb.sy+po", "IRRWIW+dmb.sys",
    "IRWIW", "IRWIW+ctrls",
    "ISA2+dmb.sy+ctrl+po", "ISA2+dmb.sy+addr+addr",
    "LB+addrR-po+dataW-po", "LB+addrW-po+ctrlW-po",
    "MP+dmb.sy+po-ctrlisbR-po", "MP+dmb.st+addrRpa-poap",
    "R+rfi-data+dsb.sy", "R+popl+pola-addrap",
    "RWC+isb+dsb.sy", "RWC+dmb.ld+dsb.sy",
    "S+po+ctrlisbRpa-poap", "S+dmb.st+ctrlisbRpa-poap",
    "SB+po-ctrlisbs", "SB+dsb.sy+pola-ctrlisbap",
    "W+RWC", "W+RWC+dmb.sy+ctrlisb+dmb.sy",
    "WRC+addr+addrR-po", "WRC+dmb.lds",
    "WRR+2W", "WRR+2W+addr+dmb.st",
    "WRW+WR", "WRW+2W+addrR-po+dmb.sy",
    "WWC", "WWC+datas",
    "Z6.0+dmb.sy+ctrl+po", "Z6.0+dmb.sy+addr+dmb.sy",
    # what the patching code relies on, each with its broken twin: the 2019 BRK sketch's
    # smp_store_release/smp_load_acquire (without the acquire: allowed), a DMB ST before
    # publishing a pointer read through it (without the address dependency: allowed)
    "MP+popl+poap", "MP+po+poap", "MP+dmb.st+addr", "MP+dmb.st+po",
)


def _catalogue() -> list[Path]:
    names = [line.split()[0] for line in CATALOGUE_VERDICTS.read_text().splitlines()
             if line.strip()]
    return [DATA / "catalogue" / f"{name}.litmus" for name in names]


CATALOGUE = _catalogue()
CHUNKS = {  # parts of about equal cost, so that `-n 2` runs them side by side
    "catalogue-1": CATALOGUE[0::2],
    "catalogue-2": CATALOGUE[1::2],
    "generated-1": [DATA / "generated" / f"{n}.litmus" for n in GENERATED[0::2]],
    "generated-2": [DATA / "generated" / f"{n}.litmus" for n in GENERATED[1::2]],
}
# Allowed outcomes the Arm model does not produce (README.md, "What the data model
# cannot produce"), with why.
KNOWN_MISSES = {
    "CAS+data1": "A3 orders every write after a successful CAS's read, not only the ones "
                 "that depend on what it returned",
    "LB+dmb.sy+data-amo.swp": "W2 orders an atomic's write after its data dependency; "
                              "Arm's model does not for the write of an atomic",
    "LB+rel+CSEL": "a conditional select's result takes the views of both operands, not "
                   "only the one the condition selected",
}
# A miss says why: the runner's completeness line, or why the test could not run.
WHY = re.compile(r"Never \(complete\)|not decided: .+|could not run: .+")


def _verdicts() -> dict[str, str]:
    out: dict[str, str] = {}
    for f in (CATALOGUE_VERDICTS, GENERATED_VERDICTS):
        for line in f.read_text().splitlines():
            if line.strip():
                name, kind = line.split()
                out[name] = kind
    return out


def test_the_sample_is_what_it_says() -> None:
    verdicts = _verdicts()
    assert len(CATALOGUE) == 79 and all(p.is_file() for p in CATALOGUE)
    assert len(set(GENERATED)) == len(GENERATED) == 40
    generated = [verdicts[n] for n in GENERATED]
    assert generated.count("Allowed") == generated.count("Forbidden") == 20
    assert all((DATA / "generated" / f"{n}.litmus").is_file() for n in GENERATED)


@pytest.mark.parametrize("chunk", CHUNKS)
def test_sample(chunk: str) -> None:
    files = CHUNKS[chunk]
    verdicts = read_verdicts(CATALOGUE_VERDICTS)
    read_verdicts(GENERATED_VERDICTS, verdicts)
    out, err = io.StringIO(), io.StringIO()
    rc = run_many([str(f) for f in files], as_json=True, out=out, err=err,
                  bounds=Bounds(max_states=500_000, max_seconds=120), verdicts=verdicts)
    *lines, last = [json.loads(line) for line in out.getvalue().splitlines()]
    summary: dict[str, Any] = last
    assert summary["summary"] == "conformance"
    names = {r["name"] for r in lines}
    missed_names = {m["name"] for m in summary["allowed"]["missed"]}
    assert missed_names == {n for n in KNOWN_MISSES if n in names}, missed_names

    # Soundness, strictly: nothing the verdicts forbid was observed.
    assert summary["forbidden"]["observed"] == [], summary["forbidden"]["observed"]
    assert summary["required"]["violated"] == [], summary["required"]["violated"]
    assert summary["sound"] is True
    # Every test of the sample runs (they all assemble), each has a verdict.
    assert err.getvalue() == "" and rc == 0 and summary["exit"] == 0
    assert len(lines) == len(files) and all("verdict" in r for r in lines)
    assert summary["run"] == len(files) and summary["not_run"] == 0
    assert summary["without_verdict"] == []

    # The summary counts: judge each test's own line here, independently.
    kinds = _verdicts()
    allowed = [r for r in lines if kinds[_key(r)] == "Allowed"]
    forbidden = [r for r in lines if kinds[_key(r)] == "Forbidden"]
    required = [r for r in lines if kinds[_key(r)] == "Required"]
    assert len(allowed) + len(forbidden) + len(required) == len(lines)
    seen = [r for r in allowed if r["positive"] > 0]
    assert summary["allowed"]["tests"] == len(allowed)
    assert summary["allowed"]["observed"] == len(seen)
    missed = {(m["name"], m["path"]): m["why"] for m in summary["allowed"]["missed"]}
    assert set(missed) == {(_key(r), r["path"]) for r in allowed if r["positive"] == 0}
    for r in allowed:
        if r["positive"] == 0:  # a miss, with the runner's completeness line
            why = missed[(_key(r), r["path"])]
            assert WHY.fullmatch(why), why
            assert (why == "Never (complete)") == r["complete"]
    assert summary["forbidden"]["tests"] == len(forbidden)
    assert summary["forbidden"]["never"] + len(summary["forbidden"]["undecided"]) == \
        len(forbidden)
    assert summary["required"]["tests"] == len(required)

    # Every exploration complete, or listed with the reason.
    incomplete = {(i["name"], i["path"]): i["why"] for i in summary["incomplete"]}
    assert set(incomplete) == {(_key(r), r["path"]) for r in lines if not r["complete"]}
    assert all(incomplete.values())


def _key(record: dict[str, Any]) -> str:
    """The name a test's verdict is under (two catalogue headers end in ``.litmus``)."""
    name: str = record["name"]
    return name if name in _VERDICT_NAMES else Path(record["path"]).stem


_VERDICT_NAMES = frozenset(_verdicts())
