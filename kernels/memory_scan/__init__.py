"""The Titans neural-memory op: ``naive.py`` (per-token reference), ``chunk.py`` (PyTorch closed
form), ``triton_chunk.py`` (fused Triton kernels), one public entry point ``memory_scan``."""

from .chunk import memory_scan_chunked
from .naive import memory_forward, memory_scan_reference
from .op import BACKENDS, available_backends, memory_scan

__all__ = ["memory_scan", "memory_scan_reference", "memory_scan_chunked", "memory_forward",
           "BACKENDS", "available_backends"]
