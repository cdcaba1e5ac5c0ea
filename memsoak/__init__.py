"""memsoak: find memory leaks in Python web services under Locust load."""

__version__ = "0.1.0"
