"""A team's own code location: one asset that runs the team's function on data_pipeline's pool."""
