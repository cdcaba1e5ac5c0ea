"""Small targets for time-bound soak runs: one that leaks steadily, one whose cache plateaus."""
