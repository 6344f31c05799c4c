"""Benchmark harness of issue 11: the hub against the bare path, side by side in one run.

`make bench` (full), `make bench-quick` (smoke, a few seconds per variant), `make bench-soak`.
Everything runs in its own processes, driven through the hub's public commands (`hub topology
apply`, `hub worker`), the publisher API (hub/publisher.py) and the simulator, so changes inside
the hub are picked up without edits here. See docs/benchmarks.md ("Harness").
"""
