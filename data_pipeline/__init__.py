"""A Dagster pipeline whose CPU-heavy steps run on a process pool, with an honest report."""
