"""Where the project's kernels and scenarios are, in a checkout or once installed."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_ROOT = _PACKAGE.parent


def _dir(name: str) -> Path:
    local = _ROOT / name
    if local.is_dir() and (_ROOT / "pyproject.toml").is_file():
        return local  # a checkout (plain or editable install)
    return _PACKAGE / name  # a wheel: pyproject maps kernels/ and scenarios/ in here


def kernels_dir() -> Path:
    return _dir("kernels")


def scenarios_dir() -> Path:
    return _dir("scenarios")
