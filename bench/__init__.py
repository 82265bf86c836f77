"""Benchmarks of the testbed: ``python -m bench [--quick] [--only NAME]``.

Sections are listed in ``bench.sections``; results go to ``bench/results/latest.json``
and ``latest.txt`` (``quick.json``/``quick.txt`` with ``--quick``).
"""
