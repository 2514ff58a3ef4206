"""Every way to run the transform and the cleaning, timed side by side (the benchmark job)."""
