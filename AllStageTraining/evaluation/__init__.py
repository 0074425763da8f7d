"""Evaluation: Dice/HD95 per region with BraTS conventions, 15-scenario tables and figures."""
