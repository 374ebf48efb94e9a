"""What every benchmark does with its figures: print them and keep them in docs/bench/."""

from __future__ import annotations

import platform
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    return f"{datetime.now(UTC):%Y-%m-%d}, Python {platform.python_version()}, {platform.machine()}"


def publish(name: str, lines: list[str]) -> None:
    text = "\n".join([*lines, ""])
    (ROOT / "docs" / "bench" / f"{name}.md").write_text(text)
    print(text, end="")
