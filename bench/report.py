"""Shared output of the bench scripts: a markdown block printed, and written to --out when given."""

from __future__ import annotations

from pathlib import Path
from typing import Optional


def emit(lines: list[str], out: Optional[Path]) -> str:
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        out.write_text(text)
    return text
