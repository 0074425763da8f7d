"""How much each stage-2 loss term pushes the segmenter: the gradient norm of every term, on training crops.

A term whose gradient is a few percent of the segmentation terms' does little whatever its weight says; this
is how issue 10 found the mean-squared co-distillation inert (3-4% of the student segmentation gradient) where the
KL form is not. Usage, on a finished run folder (``layout.RunFolder``: config.json, split.json, mae/, seg/)::

    python -m AllStageTraining.training.gradient_shares RUN [--batches 8] [--threads 2]

prints, per term, its mean value and the mean L2 norm of its gradient with respect to the segmenter's
parameters (the weights of ``seg.w_*`` not applied), over ``--batches`` batches of the run's training crops, with
the extra rows ``logit_distill_mse`` and ``logit_distill_kl`` (each kind of logit distillation, on the same views)
and ``feat_distill_mse`` (the bottleneck term). The extra rows are computed whatever the run's weights, so on a run
trained without co-distillation they measure how far its student view lies from its teacher view untaught.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import Tensor


def term_gradient_norms(terms: Mapping[str, Tensor], params: Iterable[Tensor]) -> dict[str, float]:
    """L2 norm of the gradient of each scalar term (except the weighted total ``loss``) w.r.t. ``params``; the
    graph is kept, so the terms can still be backpropagated afterwards."""
    params = list(params)
    norms = {}
    for name, value in terms.items():
        if name == "loss":
            continue
        grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
        norms[name] = float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None)))
    return norms


def stage2_gradient_shares(run_dir: str | Path, batches: int = 8, seed: int = 0) -> dict[str, tuple[float, float]]:
    """{term: (mean value, mean gradient norm)} of a finished co-distillation run's stage-2 terms, on
    ``batches`` batches of its training crops (the run's batch size and crop; bfloat16 autocast where the run
    trained with it)."""
    from torch.utils.data import default_collate

    from ..data.dataset import TrainingCrops
    from ..inference.run_reader import read_run
    from ..inference.weights import build_checked_models
    from ..methods import ZERO_FILL, get_method
    from ..nets.losses import feature_distillation, logit_distillation
    from .cases import load_split_cases
    from .distributed import init_runtime
    from .engine import training_precision
    from .scenario_sampling import subset_probabilities
    from .stage2 import SegObjective

    run_dir = Path(run_dir)
    cfg, states, embeddings, _ = read_run(run_dir)
    mae, segmenter = build_checked_models(cfg, states, embeddings, source=str(run_dir))
    method = get_method(cfg.method)
    if method.objective == ZERO_FILL:
        raise ValueError(f"{run_dir}: method {cfg.method!r} has no distillation terms to weigh")
    runtime = init_runtime("cpu")
    cases = load_split_cases(cfg, run_dir / "split.json", "train", runtime)
    table = subset_probabilities([case.available for case in cases], cfg.seg.student_sampling)
    frozen = mae.eval() if mae is not None else None  # m3ae-style-no-mae distills without one
    objective = SegObjective(segmenter.train(), frozen, cfg.seg, method.objective, table)
    size = cfg.optim_seg.batch_size
    crops = TrainingCrops(cases, cfg.data, seed=seed, length=batches * size)
    generator = torch.Generator().manual_seed(seed)
    bf16 = training_precision(cfg.optim_seg.precision, torch.device("cpu")) == "bfloat16"
    params = [p for p in segmenter.parameters() if p.requires_grad]
    sums: dict[str, list[float]] = {}
    for b in range(batches):
        batch = default_collate([crops[b * size + i] for i in range(size)])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            views = objective.views(batch, generator)
            terms = objective.losses(views, batch["label"])
            teacher, student = views.split("logits")
            for kind in ("mse", "kl"):
                terms[f"logit_distill_{kind}"] = logit_distillation(student, teacher, kind, cfg.seg.temperature)
            teacher_feat, student_feat = views.split("bottleneck")
            terms["feat_distill_mse"] = feature_distillation(student_feat, teacher_feat)
        norms = term_gradient_norms(terms, params)
        for name, norm in norms.items():
            value, total = sums.get(name, [0.0, 0.0])
            sums[name] = [value + float(terms[name].detach()), total + norm]
    return {name: (value / batches, total / batches) for name, (value, total) in sums.items()}


def main(argv: list[str] | None = None) -> int:
    from ..runtime import set_threads

    parser = argparse.ArgumentParser(prog="python -m AllStageTraining.training.gradient_shares",
                                     description="gradient norm of each stage-2 loss term of a finished run")
    parser.add_argument("run", help="a finished run folder (config.json, split.json, mae/, seg/)")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    shares = stage2_gradient_shares(args.run, args.batches)
    print(f"{'term':20s} {'mean value':>12s} {'gradient norm':>14s}")
    for name, (value, norm) in shares.items():
        print(f"{name:20s} {value:12.4g} {norm:14.4g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
