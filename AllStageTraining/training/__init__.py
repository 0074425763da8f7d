"""Training: one engine for both stages (loops, checkpoints, resume, logging, DDP), stage 1 and stage 2."""
