"""Studies over many scenarios (sweeps), on a reusable parallel executor. Sits on top of opt,
perf and report; nothing imports it back."""
