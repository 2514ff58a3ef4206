"""The assets Dagster materializes: the day's numbers, their report, and the benchmarks."""
