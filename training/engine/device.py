"""Device and precision selection (CUDA, then MPS, then CPU) and memory readings."""

from __future__ import annotations

import functools
import logging
import os
import platform
from dataclasses import asdict, dataclass
from typing import Any

from .errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceInfo:
    """The device a run uses and the precision picked for it."""

    type: str  # "cuda" | "mps" | "cpu"
    name: str
    precision: str  # resolved: "bf16" | "fp16" | "fp32"
    bf16_native: bool
    total_memory_mb: float | None
    cpu_threads: int

    @property
    def is_cuda(self) -> bool:
        """True on an NVIDIA (or ROCm) GPU."""
        return self.type == "cuda"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return asdict(self)


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@functools.lru_cache(maxsize=1)
def cpu_bf16_native() -> bool:
    """True when the CPU computes bf16 in hardware (AVX512-BF16 / AMX on x86, BF16 on Arm, Apple silicon).

    Without it torch emulates bf16 and autocast is several times slower than fp32 (measured on an AVX2 EPYC).
    """
    flags = _cpu_flags()
    if flags & {"avx512_bf16", "amx_bf16", "bf16"}:
        return True
    return platform.system() == "Darwin" and platform.machine() == "arm64"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def total_ram_mb() -> float | None:
    """This host's RAM in MB (None when it cannot be read)."""
    try:
        import psutil

        return float(psutil.virtual_memory().total) / 2**20
    except ImportError:
        pass
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return float(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def available_memory_mb(device_type: str) -> float | None:
    """Free memory on the device: CUDA free bytes, else the host's available RAM."""
    if device_type == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info()
        return float(free) / 2**20
    try:
        import psutil

        return float(psutil.virtual_memory().available) / 2**20
    except ImportError:
        pass
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def detect_device(precision: str = "auto") -> DeviceInfo:
    """Pick CUDA, then MPS, then CPU, and the best precision the device supports (or check a forced one)."""
    import torch

    threads = torch.get_num_threads()
    if torch.cuda.is_available():
        bf16 = bool(torch.cuda.is_bf16_supported())
        props = torch.cuda.get_device_properties(0)
        dtype = "bf16" if bf16 else "fp16"
        info = DeviceInfo("cuda", props.name, dtype, bf16, float(props.total_memory) / 2**20, threads)
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        info = DeviceInfo("mps", "Apple MPS", "bf16", True, total_ram_mb(), threads)
    else:
        bf16 = cpu_bf16_native()
        info = DeviceInfo("cpu", _cpu_name(), "bf16" if bf16 else "fp32", bf16, total_ram_mb(), threads)
    if precision == "auto":
        return info
    if precision == "fp16" and info.type == "cpu":
        raise ConfigError("precision 'fp16' needs a GPU; use 'bf16' or 'fp32' (or 'auto') on a CPU.")
    if precision == "bf16" and info.type == "cuda" and not info.bf16_native:
        raise ConfigError(f"precision 'bf16' is not supported by {info.name}; use 'fp16' or 'auto'.")
    if precision == "bf16" and info.type == "cpu" and not info.bf16_native:
        logger.warning("this CPU has no bf16 units: bf16 autocast is emulated and slower than fp32")
    return DeviceInfo(info.type, info.name, precision, info.bf16_native, info.total_memory_mb, threads)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def choose_cpu_threads() -> tuple[int, dict[int, float]]:
    """How many intra-op threads torch should use for CPU training, measured now: (threads, {threads: seconds}).

    On a machine shared with other busy processes, an OpenMP team waits at every barrier for a thread the kernel
    has descheduled: measured on a loaded 2-core box, 2 threads ran a LoRA step 4-5x slower than 1 thread (tiny ops
    went from 7 us to 8 ms). So the run times a short matmul + small-op mix (~0.3 s) with 1, n/2 and n threads and
    keeps the fastest, preferring more threads within 10%. ``FINETUNE_CPU_THREADS`` forces a count.
    """
    import torch

    forced = os.environ.get("FINETUNE_CPU_THREADS")
    if forced:
        return max(1, int(forced)), {}
    n = _cpu_count()
    if n <= 1:
        return 1, {}
    candidates = sorted({1, max(1, n // 2), n})
    previous = torch.get_num_threads()
    x = torch.randn(256, 576)
    w = torch.randn(576, 1536)
    small = torch.randn(576, 16)
    timings: dict[int, float] = {}
    import time

    try:
        for threads in candidates:
            torch.set_num_threads(threads)
            x @ w
            best = float("inf")
            for _ in range(3):
                started = time.perf_counter()
                for _ in range(4):
                    x @ w
                for _ in range(40):
                    small.sqrt()
                best = min(best, time.perf_counter() - started)
            timings[threads] = round(best, 5)
    finally:
        torch.set_num_threads(previous)
    fastest = min(timings.values())
    chosen = max(t for t, sec in timings.items() if sec <= fastest * 1.1)
    return chosen, timings


_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc's mallopt parameters


def _glibc() -> Any:
    """glibc (its ``mallopt`` and ``malloc_trim``) on Linux, else None (another OS, musl or another libc)."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 (raises AttributeError without them)
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back to the kernel (Linux only; a no-op
    elsewhere or when ``FINETUNE_CPU_KEEP_MEMORY=0``); True when applied.

    By default glibc serves large blocks (a layer's activations, a logits chunk) with fresh mmaps and trims the
    heap's free top, so each step larger than the one before page-faults its memory in again; on 2 CPU cores that
    was 120k-170k faults and 0.6-1.4 s of a 2 s step. Here blocks up to 32 MB (glibc's ceiling) come from the heap,
    whose free memory is kept (the process's peak RSS is unchanged: it is reached anyway)."""
    libc = _glibc()
    if libc is None or os.environ.get("FINETUNE_CPU_KEEP_MEMORY", "1") == "0":
        return False
    applied = libc.mallopt(_M_MMAP_THRESHOLD, 32 * 2**20) == 1
    applied = libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1 and applied  # (an int: 2 GB)
    return libc.mallopt(_M_TOP_PAD, 64 * 2**20) == 1 and applied


def release_freed_memory() -> None:
    """After a run: glibc's default thresholds again (128 KB) and the kept free memory handed back to the kernel
    (``malloc_trim``), so a long-lived worker process does not sit on its last run's peak. Linux/glibc only."""
    libc = _glibc()
    if libc is None:
        return
    libc.mallopt(_M_MMAP_THRESHOLD, 128 * 1024)
    libc.mallopt(_M_TRIM_THRESHOLD, 128 * 1024)
    libc.mallopt(_M_TOP_PAD, 0)
    libc.malloc_trim(0)


def _rss_mb() -> float:
    try:
        import psutil

        return float(psutil.Process(os.getpid()).memory_info().rss) / 2**20
    except ImportError:
        pass
    try:
        with open("/proc/self/status", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return float(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def memory_snapshot(device_type: str) -> tuple[float, dict[str, float]]:
    """(headline MB, detail dict): CUDA allocated+reserved, MPS allocated, else the process RSS."""
    detail: dict[str, float] = {"rss_mb": round(_rss_mb(), 1)}
    headline = detail["rss_mb"]
    if device_type == "cuda":
        import torch

        detail["cuda_allocated_mb"] = round(torch.cuda.memory_allocated() / 2**20, 1)
        detail["cuda_reserved_mb"] = round(torch.cuda.memory_reserved() / 2**20, 1)
        detail["cuda_max_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        headline = detail["cuda_allocated_mb"]
    elif device_type == "mps":
        import torch

        detail["mps_allocated_mb"] = round(torch.mps.current_allocated_memory() / 2**20, 1)
        headline = detail["mps_allocated_mb"]
    return headline, detail


def peak_memory_mb(device_type: str) -> float:
    """Peak memory so far: CUDA max allocated, else the process's peak RSS."""
    if device_type == "cuda":
        import torch

        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    try:
        import resource

        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return round(peak_kb / 1024 if platform.system() != "Darwin" else peak_kb / 2**20, 1)
    except (ImportError, OSError):
        return round(_rss_mb(), 1)
