"""Where the project's kernels and scenarios are, in a checkout or once installed."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent


def _dir(name: str) -> Path:
    local = _ROOT / name
    if local.is_dir() and (_ROOT / "pyproject.toml").is_file():
        return local
    return Path(str(importlib.resources.files(f"testbed.{name}")))


def kernels_dir() -> Path:
    return _dir("kernels")


def scenarios_dir() -> Path:
    return _dir("scenarios")
