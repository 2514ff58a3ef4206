"""The names every measurement shares: the pipeline's two stages and the two ways to run one."""

CLEANING, TRANSFORM = "cleaning", "transform"
SERIAL, PARALLEL = "serial", "parallel"
