"""A training run: its settings, data, the Trainer's loop, schedule, clock, signals, DDP and the files it writes."""
