"""cmodx-testbed: live code-patching races on AArch64, emulated CPU by CPU.

See README.md and DESIGN.md.  The parts: ``asm`` (kernels to a linked image),
``memory`` (the instruction-fetch model), ``machine`` (CPUs on Unicorn),
``scheduler`` and ``strategies`` (who runs next), ``scenario`` (what runs).
"""

__version__ = "0.1.0"
