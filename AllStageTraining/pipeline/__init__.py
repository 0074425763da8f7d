"""The pipeline: one run (stage 1, stage 2, the 15-scenario evaluation) in a run folder, the experiment grid
and the demo, each called by its command (``run.train_and_evaluate``, ``experiment.run_experiment``,
``demo.run_demo``)."""
