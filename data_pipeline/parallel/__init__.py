"""The parallel machinery, no Dagster: process pool, CPU counting and budget, logs, insight."""
