"""The jobwatchd benchmark suite: ``python -m bench [--quick]`` writes docs/BENCHMARKS.md."""
