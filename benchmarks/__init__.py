"""Benchmarks: throughput, latency, scaling and quality harness, NAB scoring, baselines."""
