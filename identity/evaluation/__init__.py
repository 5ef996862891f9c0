"""Evaluation protocols and metrics, shared by `identity eval`, `identity calibrate` and benchmarks/."""
