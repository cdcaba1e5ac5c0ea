"""Call paths that reach given source lines, seen by a profile hook: the tracebacks of suspects
that a series traced one frame deep (`--until-confident`) found.

tracemalloc one frame deep costs a target about a third of its untraced throughput, ten frames
about a seventh (bench/overhead.py), and restarting it deeper drops every trace. A profile hook
instead sees each call of the functions holding the suspects' lines, with the stack that made
it, for as long as it is on; it costs the target while watching, and only then.

The hook is C (`_callhook.c`): it passes on only the calls of code from the suspects' files,
where `sys.setprofile` makes a Python call of every call and return in the target
(`bench/call_paths.py`: the seed served at 0.71x of its throughput with the C hook, 0.36x with
`sys.setprofile`); without the extension built, `sys.setprofile` it is.
Either hook sees the thread that set it: the target's main thread, where a gevent server runs
every request's greenlet. Python 3.11 cannot hook other threads that are already running, so a
threaded server's requests show no path (the suspects then keep their one-frame tracebacks).
The hook takes itself off after `max_seconds` even if nobody asks for the answer.
"""

from __future__ import annotations

import sys
import time
import types
from collections import Counter
from typing import Any

from memsoak.agent import tracing

_callhook: types.ModuleType | None
try:
    from memsoak.agent import _callhook
except ImportError:  # not built (a source tree used without `pip install -e .`)
    _callhook = None

MAX_PATHS = 20  # distinct call paths kept per line; more are counted, not kept
_CHECK_CLOCK_EVERY = 1023  # profile events between two looks at the clock (a mask)

Line = tuple[str, int]
Path = tuple[Line, ...]  # callers, innermost first


class CallerWatch:
    def __init__(self, lines: list[Line], depth: int, max_seconds: float) -> None:
        self.lines = lines
        self.depth = depth
        self._files = {file for file, _ in lines}
        self._deadline = time.monotonic() + max_seconds
        self._codes: dict[types.CodeType, tuple[Line, ...]] = {}
        self._paths: dict[Line, Counter[Path]] = {line: Counter() for line in lines}
        self._overflow: Counter[Line] = Counter()
        self._events = 0
        self._started = False
        self._callback = self._on_call  # one bound method: the C hook's is compared with it

    @property
    def watching(self) -> bool:
        """Started, and neither stopped nor gone past its deadline."""
        if _callhook is not None:
            return self._started and _callhook.current() is self._callback
        return self._started

    def start(self) -> None:
        self._started = True
        if _callhook is not None:
            _callhook.start(tuple(self._files), self._callback, self._deadline)
        else:
            sys.setprofile(self._on_event)

    def stop(self) -> None:
        if self.watching:
            if _callhook is not None:
                _callhook.stop()
            else:
                sys.setprofile(None)
        self._started = False

    def _lines_in(self, code: types.CodeType) -> tuple[Line, ...]:
        if code.co_filename not in self._files:
            return ()
        # The lines this code object's own instructions are on: a nested function's body is in
        # its own code object, and a module's code holds its `def` lines, not their bodies.
        own = {line for _start, _end, line in code.co_lines() if line is not None}
        return tuple((file, line) for file, line in self.lines if file == code.co_filename and line in own)

    def _on_event(self, frame: types.FrameType, event: str, _arg: Any) -> None:
        self._events += 1
        if not self._events & _CHECK_CLOCK_EVERY and time.monotonic() > self._deadline:
            self.stop()
            return
        if event == "call":
            self._on_call(frame)

    def _on_call(self, frame: types.FrameType) -> None:
        code = frame.f_code
        wanted = self._codes.get(code)
        if wanted is None:
            wanted = self._codes[code] = self._lines_in(code)
        if not wanted:
            return
        callers: list[Line] = []
        caller = frame.f_back
        while caller is not None and len(callers) < self.depth - 1:
            callers.append((caller.f_code.co_filename, caller.f_lineno))
            caller = caller.f_back
        path = tuple(callers)
        for line in wanted:
            seen = self._paths[line]
            if path in seen or len(seen) < MAX_PATHS:
                seen[path] += 1
            else:
                self._overflow[line] += 1

    def answer(self) -> dict[str, Any]:
        """Per line, the paths seen, most calls first, each as frames innermost last (the line
        itself last), with function names and source from the target's files."""
        frames = {frame for paths in self._paths.values() for path in paths for frame in path}
        # Only lines that ran are described: their file is a loaded code object's, so no file
        # named by the request is ever read.
        reached = [line for line, paths in self._paths.items() if paths]
        described = tracing.describe([*frames, *reached])
        found = []
        for line, paths in self._paths.items():
            found.append(
                {
                    "file": line[0],
                    "line": line[1],
                    "calls": sum(paths.values()) + self._overflow[line],
                    "paths": [
                        {
                            "calls": calls,
                            "frames": [[f, n, *described[(f, n)]] for f, n in (*reversed(path), line)],
                        }
                        for path, calls in paths.most_common()
                    ],
                }
            )
        return {"depth": self.depth, "lines": found}
