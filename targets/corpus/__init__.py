"""Small Flask targets with planted leaks and look-alikes that are not leaks.

Each module's docstring says what it does per request and the right verdict (`Expected verdict:`),
for leaks the line that keeps the memory (`Planted line: FILE:N`, marked `# planted` in the source),
and, when not just `/`, the paths the corpus scenario (locustfiles/corpus.py) must request
(`Paths: /a,/b`). A leak may say what keeps it (`Retention kind:` reachable, unreachable or raw;
`Retention holder:` or `Retention root:`), and a target the measured requests it needs at least
(`Requests: N`). Modules named `_*.py` are apps that a target and its twin share, not targets.
tests/test_corpus.py and bench/accuracy.py hold every target to its docstring.
"""
