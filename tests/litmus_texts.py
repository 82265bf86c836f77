"""Litmus text the tests share, inline so that they stand alone without ../shared."""

from __future__ import annotations


def sm_b_isb(name: str = "SM.B+isb", cache: str | None = None) -> str:
    """herd-ifetch's SM.B+isb (Arm's catalogue), under another name or with a
    ``CacheType=`` line if asked."""
    return (f"AArch64 {name}\n" + (f"CacheType={cache}\n" if cache is not None else "")
            + """{ 0:X0=NOP; 0:X1=P0:L0; 0:X9=0; }
P0              ;
    STR W0,[X1] ;
    ISB         ;
L0: B L1        ;
    MOV W9,#1   ;
L1:             ;
exists 0:X9=0
""")
