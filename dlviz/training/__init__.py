"""Training a preset: losses, the trainer, telemetry, the live feed, the run store, the runner and diagnoses."""
