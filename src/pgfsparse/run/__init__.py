"""One training run: its parts, the loop, checkpoints, resume, signals and processes."""
