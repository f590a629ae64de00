"""What a run leaves on disk: the run directory, atomic writes, training checkpoints.

Below data, models, engine and eval: all of them write through `atomic`."""
