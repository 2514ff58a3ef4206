"""The resources the assets share: the data directory and the process pool, one per file."""
