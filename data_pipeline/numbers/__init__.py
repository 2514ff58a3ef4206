"""The numbers work, no Dagster: generation, parsing, chunking, transforms, Parquet, storage."""
