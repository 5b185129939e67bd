"""Where a benchmark's table goes: benchmarks/results/NAME.md and a marked section of README.md
(<!-- begin:NAME --> … <!-- end:NAME -->)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
RESULTS = Path(__file__).resolve().parent / "results"


def update_section(name: str, text: str, readme: Path = README) -> None:
    content = readme.read_text()
    pattern = re.compile(rf"(<!-- begin:{name} -->\n).*?(<!-- end:{name} -->)", re.DOTALL)
    if not pattern.search(content):
        raise SystemExit(f"README.md has no <!-- begin:{name} --> … <!-- end:{name} --> section to update")
    readme.write_text(pattern.sub(lambda m: m.group(1) + text.rstrip() + "\n" + m.group(2), content))


def publish(text: str, results_file: str, section: str | None = None) -> None:
    """Write ``text`` to benchmarks/results/``results_file`` and, given a ``section``, into that README section."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / results_file).write_text(text)
    if section is not None:
        update_section(section, text)


def machine(threads: int | None = None) -> str:
    """Where a figure was measured: the CPU with the instruction sets int8 kernels depend on (faceage.machine), the
    threads the measured code used, Python and ONNX Runtime; printed with every table."""
    import platform
    from importlib.metadata import version

    from faceage.machine import cpu_info

    used = f", {threads} thread{'s' if threads != 1 else ''}" if threads is not None else ""
    return f"{cpu_info().describe()}{used}, Python {platform.python_version()}, onnxruntime {version('onnxruntime')}"
