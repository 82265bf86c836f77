"""The scenario's own code failing: an error of its author, not a finding, not bad input.

The command line exits 3 on it (0: nothing found, 1: a finding, 2: bad input); under
pytest it is an error, not a failure.  The message names the scenario, the method that
raised, the file and line where it raised, and the exception.
"""

from __future__ import annotations

import traceback
from pathlib import Path

__all__ = ["ScenarioCodeError", "scenario_code_error"]

_PACKAGE = Path(__file__).resolve().parent


class ScenarioCodeError(Exception):
    """A scenario's ``setup``, ``check`` or ``observe`` raised."""

    def __init__(self, message: str, where: str = "") -> None:
        super().__init__(message)
        self.where = where  # "file:line" of the raise, in the scenario's code if known


def scenario_code_error(name: str, method: str, exc: BaseException) -> ScenarioCodeError:
    """The error for scenario ``name``'s ``method`` having raised ``exc``: located at the
    deepest frame outside the testbed package (the scenario's code), else the deepest."""
    frames = traceback.extract_tb(exc.__traceback__)
    outside = [f for f in frames if not Path(f.filename).resolve().is_relative_to(_PACKAGE)]
    chosen = outside or list(frames)
    where = f"{chosen[-1].filename}:{chosen[-1].lineno}" if chosen else ""
    text = f"{type(exc).__name__}: {exc}".rstrip(": ")
    return ScenarioCodeError(f"{where + ': ' if where else ''}scenario {name!r}: {method}() "
                             f"raised {text}", where)
