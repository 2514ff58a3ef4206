"""The local backend: a pool of worker processes on this machine (owner and worker sides)."""
