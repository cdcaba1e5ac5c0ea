"""Target apps for memsoak. Each app module's docstring says what it does per request and, on a
line of its own, `Expected verdict: <verdict>`; tests hold every target to it."""
