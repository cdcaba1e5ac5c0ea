"""Targets that fail on purpose, for the fault tests (tests/test_faults.py)."""
