"""When the pool pays: the pipeline's steps swept over sizes and workers, with report and chart."""
