"""The Titans neural-memory op: ``reference.py`` (per-token loop), ``chunked.py`` (PyTorch closed
form), ``triton.py`` (fused Triton kernels), one public entry point ``memory_scan``."""

from .chunked import memory_scan_chunked
from .op import BACKENDS, available_backends, memory_scan
from .reference import memory_forward, memory_scan_reference

__all__ = ["memory_scan", "memory_scan_reference", "memory_scan_chunked", "memory_forward",
           "BACKENDS", "available_backends"]
