"""Replace a marked section of README.md with a benchmark's table: <!-- begin:NAME --> … <!-- end:NAME -->."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def update_section(name: str, text: str, readme: Path = README) -> None:
    content = readme.read_text()
    pattern = re.compile(rf"(<!-- begin:{name} -->\n).*?(<!-- end:{name} -->)", re.DOTALL)
    if not pattern.search(content):
        raise SystemExit(f"README.md has no <!-- begin:{name} --> … <!-- end:{name} --> section to update")
    readme.write_text(pattern.sub(lambda m: m.group(1) + text.rstrip() + "\n" + m.group(2), content))
