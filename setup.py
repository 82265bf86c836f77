"""The one thing pyproject.toml cannot say: the engine's compiled fast path
(testbed/_fastpath.c, issue 15) is an optional extension.  Without a C compiler the
build skips it and the testbed runs its pure-Python hooks (testbed/fastpath.py)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("testbed._fastpath", ["testbed/_fastpath.c"], optional=True,
                             extra_compile_args=["-O2"])])
