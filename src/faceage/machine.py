"""The CPU a result was measured on: model name, the instruction sets int8 kernels depend on, core count.

ONNX Runtime picks its int8 and float kernels by instruction set (AVX2, AVX-512, VNNI on x86; NEON and dot-product
instructions on ARM), so speed, and for files that compute in int8 even the answer, depends on the CPU. Every
benchmark table and ``faceage selftest`` print :func:`cpu_info` beside their figures. The instruction sets are the ones
this process sees (NumPy's run-time CPU detection, the same CPUID that ONNX Runtime reads), so an emulated or masked
CPU (qemu, some VMs) is described as the kernels see it; the model name and the flags NumPy does not know (AVX-VNNI,
AMX) come from ``/proc/cpuinfo`` (Linux) or ``sysctl`` (macOS).
"""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from functools import cache

from faceage.errors import FaceageError

# flag in /proc/cpuinfo → how it is printed; the instruction sets that change int8 kernels
X86_FLAGS = {
    "avx2": "AVX2",
    "avx512f": "AVX-512",
    "avx512bw": "AVX-512BW",
    "avx512_vnni": "AVX-512 VNNI",
    "avx_vnni": "AVX-VNNI",
    "amx_int8": "AMX-INT8",
}
ARM_FLAGS = {"asimd": "NEON", "asimddp": "dot product", "i8mm": "int8 matrix multiply"}
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
# NumPy's names for what it detects at run time → /proc/cpuinfo's
NUMPY_FLAGS = {"AVX2": "avx2", "AVX512F": "avx512f", "AVX512BW": "avx512bw", "AVX512VNNI": "avx512_vnni",
               "ASIMD": "asimd", "ASIMDDP": "asimddp"}  # fmt: skip


@dataclass(frozen=True)
class CpuInfo:
    model: str
    architecture: str  # platform.machine(): x86_64, aarch64, arm64, ...
    flags: frozenset[str]  # the relevant ones only (keys of X86_FLAGS / ARM_FLAGS), as this process sees them
    cores: int
    emulated: bool = False  # /proc/cpuinfo lists other instruction sets than this process sees (emulation, masking)

    @property
    def x86(self) -> bool:
        return self.architecture.lower() in {"x86_64", "amd64", "i386", "i686"}

    @property
    def vnni(self) -> bool:
        """8-bit dot-product instructions on x86 (int8 kernels that cannot saturate)."""
        return any(flag in self.flags for flag in VNNI_FLAGS)

    @property
    def instruction_sets(self) -> str:
        names = {**X86_FLAGS, **ARM_FLAGS}
        found = [names[flag] for flag in names if flag in self.flags]
        if self.x86 and not self.vnni:
            found.append("no VNNI")
        return ", ".join(found) or "no SIMD flags read"

    def describe(self) -> str:
        """One line for a table's caption, e.g. 'AMD EPYC (x86_64: AVX2, AVX-512, AVX-512 VNNI), 2 cores'."""
        seen = " as this process sees it (emulated or masked)" if self.emulated else ""
        return f"{self.model}{seen} ({self.architecture}: {self.instruction_sets}), {self.cores} cores"


def default_threads() -> int:
    """Threads for one estimator's networks: the cores this process may use, at most two. The second thread makes
    one photo faster (the age model's batch of a face and its mirror image, and the detector's pyramid resized beside
    P-Net; the photo rows of ``benchmarks/speed.py``); the networks are too small for more threads to pay."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(2, usable))


def resolve_threads(threads: int | None) -> int:
    """``threads`` as given (a whole number from 1), or :func:`default_threads` for None."""
    if threads is None:
        return default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise FaceageError(f"threads must be a whole number, 1 or more; got {threads!r}")
    return threads


@cache
def cpu_info() -> CpuInfo:
    architecture = platform.machine() or "unknown"
    model, listed = _read_linux() or _read_macos() or (platform.processor() or architecture, set())
    listed &= set(X86_FLAGS) | set(ARM_FLAGS)
    seen = _seen_by_numpy()
    if seen is None:
        return CpuInfo(model.strip() or architecture, architecture, frozenset(listed), os.cpu_count() or 1)
    known = set(NUMPY_FLAGS.values())
    emulated = bool(listed) and (listed & known) != seen
    extra = set() if emulated else listed - known  # AVX-VNNI, AMX, i8mm: trusted only when the rest agrees
    return CpuInfo(model.strip() or architecture, architecture, frozenset(seen | extra), os.cpu_count() or 1, emulated)


def _seen_by_numpy() -> set[str] | None:
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # NumPy's private module moved: fall back on /proc/cpuinfo alone
        return None
    return {ours for theirs, ours in NUMPY_FLAGS.items() if features.get(theirs)}


def _read_linux() -> tuple[str, set[str]] | None:
    try:
        text = open("/proc/cpuinfo", encoding="utf-8", errors="replace").read()
    except OSError:
        return None
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in {"model name", "hardware", "cpu model"} and not model:
            model = value.strip()
        elif key in {"flags", "features"} and not flags:
            flags = set(value.split())
    return model, flags


def _read_macos() -> tuple[str, set[str]] | None:
    if platform.system() != "Darwin":
        return None
    try:
        model = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                               timeout=5).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    flags = {"asimd", "asimddp"} if platform.machine() == "arm64" else set()  # every Apple silicon core has both
    return model, flags
