"""Peak memory of one trial, also when a worker process runs several trials one after another.

A process's own high-water mark (``VmHWM``, ``ru_maxrss``) covers its whole life, so a reused Ray
worker would report the largest trial it ever ran. ``PeakMemory`` measures one trial: on Linux it
resets the kernel's high-water mark at the start (writing 5 to /proc/self/clear_refs) and reads
``VmHWM`` at the end; where that file cannot be written it samples the resident set every 50 ms in
a thread (a peak shorter than that can be missed; the method is recorded). On CUDA it also resets
and reads PyTorch's peak of allocated device memory.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Optional

import torch

_STATUS = Path("/proc/self/status")
_CLEAR = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> Optional[int]:
    try:
        found = re.search(rf"^{field}:\s+(\d+)\s+kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(found.group(1)) if found else None


def _rss_kib() -> Optional[int]:
    rss = _status_kib("VmRSS")
    if rss is not None:
        return rss
    try:
        import psutil

        return psutil.Process().memory_info().rss // 1024
    except Exception:  # noqa: BLE001 - no way to read it: the peak stays unknown
        return None


class PeakMemory:
    """``with PeakMemory() as peak: ... peak.result()``: the peak RSS (MiB) since the block began, how it was
    measured, and the CUDA peak when a GPU was used."""

    def __init__(self, interval_s: float = 0.05):
        self.interval_s = interval_s
        self.method = "none"
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "PeakMemory":
        try:
            _CLEAR.write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
            self.method = "vmhwm"
        except OSError:
            self.method = "sampled"
            self._thread = threading.Thread(target=self._sample, name="masf-peak-memory", daemon=True)
            self._thread.start()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            rss = _rss_kib()
            if rss is not None:
                self.peak_kib = max(self.peak_kib, rss)
            self._stop.wait(self.interval_s)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def result(self) -> dict[str, object]:
        """The peak so far (callable inside the ``with`` block)."""
        if self.method == "vmhwm":
            self.peak_kib = _status_kib("VmHWM") or 0
        elif self.method == "sampled":
            self.peak_kib = max(self.peak_kib, _rss_kib() or 0)
        out: dict[str, object] = {"peak_rss_mb": round(self.peak_kib / 1024.0, 1) if self.peak_kib else None,
                                  "peak_memory_method": self.method}
        if torch.cuda.is_available():
            out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        return out
