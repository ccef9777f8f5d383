"""Benchmarks: figures and ratios printed side by side with references measured in the same run."""
