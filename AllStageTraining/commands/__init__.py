"""Subcommands of ``python -m AllStageTraining``: one module each (HELP, add_arguments, run)."""
