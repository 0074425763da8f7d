"""Inference against MONAI's BraTS-tutorial SegResNet, bfloat16 against float32, and training step rates.

What ``run_benchmark`` measures (module ``run``), on one synthetic 240x240x155 case (``inputs.make_case``:
``synth``, 1 mm; random data in a brain-shaped mask if ``synth`` fails):

- ``conv_peak``: the machine's 3-D convolution peak in GFLOP/s for float32 and bfloat16 (and float16 on a GPU),
  the yardstick of each run's share;
- ``inference``: our ``Predictor`` from the NIfTI files to written outputs, with the ``paper`` architecture and
  random weights (or ``timed_bundle``), for the full set (no MAE pass) and FLAIR + T1ce (T1 and T2 synthesized),
  one pass over the brain crop, at the default precision (``auto``: bfloat16 where the device computes it
  natively, ``runtime.resolve_precision``; both runs include T1ce); without ``quick`` also in the other precision (float32, or
  bfloat16 where the default is float32), FLAIR + T1ce without synthesized sequences (no MAE pass for the default
  method's display-only MAE), without channels-last, with the ``paper`` preset's sliding window, and the full
  set with PyTorch's allocator asking for transparent huge pages (``runtime.HUGE_PAGES_ENV``); with a trained
  ``bundle`` on the CPU (also with ``quick``), that bundle in its own sliding windows on FLAIR + T2, a set the
  default runs in float32, one window per network call against ``predictor.CPU_FLOAT32_WINDOWS_PER_CALL``. The
  reference is what a user would otherwise pick, MONAI's BraTS tutorial:
  ``SegResNet(blocks_down=[1,2,2,4], blocks_up=[1,1,1], init_filters=16, in_channels=4, out_channels=3)``
  (random weights), channel-wise nonzero z-score, ``sliding_window_inference(roi_size=(240,240,160),
  sw_batch_size=1, overlap=0.5)``, sigmoid > 0.5, float32 on the CPU, in a process with PyTorch's default
  allocator as the tutorial runs; ratios are times in the same run. The reference and the two default runs run
  ``run.TARGET_REPEATS`` times each and the median run stands for them (the largest peak memory of the three);
- ``predict_process``: a whole ``predict`` command as a user starts it, split into start, model loading,
  reading, checks, preprocessing, networks, mapping back, writing and exit, with its imports;
- ``agreement`` (with a trained ``bundle``): bfloat16 against float32 for the 15 scenarios of a case, Dice of
  the labels per region and the largest difference of the synthesized sequences, and the worst over the sets
  that the default runs in bfloat16;
- ``training``: optimizer steps per second of both stages (``training.step_rate``), ``cpu`` preset at 64^3 and
  48^3 in float32 and bfloat16 on the CPU, against issue 14's baseline.

Every measurement runs in a fresh process (``processes.run_child``) with the same thread count, so peak
resident memory (``VmHWM``: Python, torch, data, activations) is that measurement's alone. Results go to
``benchmark.json`` and ``benchmark.md`` (``report``).
"""

from .agreement import label_agreement
from .inference import child_ours, count_flops_ours
from .report import markdown_table
from .run import run_benchmark

__all__ = ["child_ours", "count_flops_ours", "label_agreement", "markdown_table", "run_benchmark"]
