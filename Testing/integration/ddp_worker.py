"""Run under ``torchrun --nproc_per_node=2``: stage-1 training on CPU (gloo); each rank saves its weights.

Usage: ddp_worker.py SPLIT OUT_DIR CACHE_DIR. Writes OUT_DIR/rank<r>.safetensors for every rank, beside what
train-mae writes on rank 0 (model.safetensors, checkpoint.pt, config.json).
"""

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from AllStageTraining.config import preset
from AllStageTraining.training.distributed import init_runtime, shutdown_runtime
from AllStageTraining.training.stage1 import fit_mae

torch.set_num_threads(1)
split, out, cache_dir = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
cfg = preset("tiny")
cfg.optim_mae.steps = 3
cfg.data.cache_dir = cache_dir
runtime = init_runtime("cpu")
assert runtime.world_size == 2 and torch.distributed.get_backend() == "gloo"
mae, steps = fit_mae(cfg, split, out, False, runtime)
out.mkdir(parents=True, exist_ok=True)
save_file({k: v.contiguous() for k, v in mae.state_dict().items()}, str(out / f"rank{runtime.rank}.safetensors"))
print(f"rank {runtime.rank} finished {steps} steps", flush=True)
shutdown_runtime()
