"""A cheap census of the target's memory, for watching with tracing off: what can be read in
well under a millisecond without walking the heap (no gc.get_objects(), no tracemalloc)."""

from __future__ import annotations

import gc
import sys
from typing import Any

import psutil

_PROCESS = psutil.Process()


# The blocks held right after the last full collection (0 until the first one).
# The live count is a sawtooth: cyclic garbage waits for the next full collection (every few
# hundred requests on the fixed seed), and its rising edge reads as growth. Just after a full
# collection there is no garbage, so the count is flat unless objects leak. Read by the
# collector's own callback, not by forcing a collection per reading: that walks the whole heap
# inside the load every time (about 50 ms with the seed's heap after a thousand requests).
_after_full_collection = {"blocks": 0}


def _on_collection(phase: str, info: dict[str, int]) -> None:
    if phase == "stop" and info.get("generation") == 2:
        _after_full_collection["blocks"] = sys.getallocatedblocks()


gc.callbacks.append(_on_collection)


def census() -> dict[str, Any]:
    """RSS, the blocks Python's allocator holds (grows with live objects, whatever their type,
    and by one per leaked object even when RSS hides it in free arena space), the same just
    after the last full collection (`settled_blocks`: the live count until the first one), and
    the cyclic GC's per-generation counts."""
    blocks = sys.getallocatedblocks()
    return {
        "rss_bytes": int(_PROCESS.memory_info().rss),
        "allocated_blocks": blocks,
        "settled_blocks": _after_full_collection["blocks"] or blocks,
        "gc_counts": list(gc.get_count()),
    }
