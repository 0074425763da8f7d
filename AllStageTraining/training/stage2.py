"""Stage 2: the segmenter, by co-distillation (``ours``) or as one of the baselines (METHOD.md, "Stage 2").

The method (``cfg.method``, see ``methods``) picks one of three objectives. Per batch of crops with present
sets A (B, 4):
- co-distillation (``ours`` and its ablations): the MAE is frozen. Teacher view = real A + the MAE's
  completion of the rest, with the prompt of the full set (FC12) or of A (``seg.teacher_prompt``). Student
  view = a random non-empty S within A (S may equal A; ``seg.student_sampling``: uniform over the subsets of A,
  or balanced so that every scenario is trained equally often, see ``scenario_sampling``) kept real, the rest
  completed by the MAE from S, with the prompt of S. Completions follow the real channels' convention
  (clipped, 0 outside the brain), exactly as at inference. Both views go through the shared segmenter in one batch. Loss = w_seg_teacher *
  seg(teacher) + w_seg_student * seg(student) + w_logit_distill * logit distillation + w_feat_distill *
  bottleneck distillation; the teacher's outputs are detached inside the distillation terms, so distillation
  never pushes the teacher branch.
- dropout zero-fill (``zero-fill``, ``zero-fill-long``): no MAE; the plain U-Net sees a random non-empty S
  within A (drawn as the student's), the other channels 0; segmentation loss only.
- two-view self-distillation (``m3ae-style`` and its ablations): two random subsets S1, S2 within A, each completed
  by the (L_rec-only) MAE, or zero-filled where the method has no MAE (``m3ae-style-no-mae``); the view with more
  real sequences is the teacher (ties: view 1), detached in the distillation terms; no hyper-network.
A term whose weight is 0 is not computed and not logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..config import RunConfig, SegConfig
from ..constants import FULL_SCENARIO, SCENARIOS
from ..layout import CONFIG_FILE, EMBEDDINGS_FILE, MODEL_FILE
from ..methods import CO_DISTILLATION, OBJECTIVES, ZERO_FILL, configure, get_method
from ..nets.losses import feature_distillation, logit_distillation, segmentation_loss
from ..nets.mae import MultimodalMAE
from ..nets.segmenter import PersonalizedSegmenter
from ..fileio import atomic_write_json
from .cases import load_split_cases, load_weights, save_weights, with_grad_disabled
from .distributed import barrier, init_runtime
from .engine import place_on_device, seed_everything, train_loop
from .scenario_sampling import N_CODES, codes, draw_subsets, mask_code, subset_probabilities

#: SCENARIOS index of each availability mask, by the mask's bit code (``scenario_sampling.mask_code``).
_SCENARIO_OF_CODE = torch.full((N_CODES,), -1, dtype=torch.long)
for _s in SCENARIOS:
    _SCENARIO_OF_CODE[mask_code(_s.mask)] = _s.index


def scenario_indices(mask: Tensor) -> Tensor:
    """(B, 4) bool availability -> (B,) long indices into SCENARIOS (every row must be non-empty)."""
    if not bool(mask.any(1).all()):
        raise ValueError("every sample needs at least one sequence")
    return _SCENARIO_OF_CODE.to(mask.device)[codes(mask.bool())]


def complete_inputs(mae: MultimodalMAE | None, x: Tensor, keep: Tensor, box: Tensor, brain: Tensor) -> Tensor:
    """The network input for real sequences ``keep`` (B, 4) bool: those channels of x, the others completed
    by the frozen MAE as at inference (``MultimodalMAE.complete``: clipped, 0 outside ``brain`` (B, 1, D, H, W)),
    or zero without an MAE. Samples with all four kept skip the MAE."""
    kept = keep.bool()[:, :, None, None, None]
    out = torch.where(kept, x, torch.zeros((), dtype=x.dtype, device=x.device))
    if mae is None:
        return out
    needs = ~keep.bool().all(1)
    if bool(needs.any()):
        with torch.no_grad():
            completed = mae.complete(out[needs], keep[needs], box[needs], brain[needs])
        out = out.clone()
        out[needs] = completed.to(out.dtype)
    return out


@dataclass
class Views:
    """Both views of a batch in one segmenter pass: rows ``:B`` are view 1, rows ``B:`` view 2.

    ``teacher`` (B,) bool: for each sample, whether view 1 is its teacher (``ours``: always); ``masks``
    (2B, 4) bool: the real sequences of each row. ``outputs``: the segmenter's dict over 2B rows.
    """

    outputs: dict
    teacher: Tensor
    masks: Tensor
    batch: int

    def split(self, key: str) -> tuple[Tensor, Tensor]:
        """(teacher rows, student rows) of an output (B, ...) each."""
        value = self.outputs[key]
        first, second = value[: self.batch], value[self.batch :]
        pick = self.teacher.view(-1, *([1] * (value.dim() - 1)))
        return torch.where(pick, first, second), torch.where(pick, second, first)

    def split_deep(self) -> tuple[list[Tensor], list[Tensor]]:
        teacher, student = [], []
        for value in self.outputs["deep"]:
            first, second = value[: self.batch], value[self.batch :]
            pick = self.teacher.view(-1, *([1] * (value.dim() - 1)))
            teacher.append(torch.where(pick, first, second))
            student.append(torch.where(pick, second, first))
        return teacher, student


#: Which prompt the co-distillation teacher view gets: the full set's, or that of the sequences it really has.
TEACHER_PROMPTS = ("full", "real")


class SegObjective(nn.Module):
    """One stage-2 training step as a module: ``forward(batch, generator) -> {"loss", "seg_teacher", ...}``.

    batch: ``image`` (B, 4, D, H, W), ``available`` (B, 4) bool, ``label`` (B, 3, D, H, W) region maps, ``box``.
    objective: one of ``methods.OBJECTIVES`` (the method's ``objective``).
    The frozen MAE is held outside the module tree (not trained, not in checkpoints, not seen by DDP).
    """

    def __init__(self, segmenter: PersonalizedSegmenter, mae: MultimodalMAE | None, cfg: SegConfig, objective: str,
                 subset_table: Tensor | None = None):
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown stage-2 objective {objective!r}; expected one of {OBJECTIVES}")
        if objective == CO_DISTILLATION and mae is None:
            raise ValueError(f"the {objective} objective needs the stage-1 MAE")
        if cfg.teacher_prompt not in TEACHER_PROMPTS:
            raise ValueError(f"seg.teacher_prompt must be one of {TEACHER_PROMPTS}, not {cfg.teacher_prompt!r}")
        self.segmenter = segmenter
        self.cfg = cfg
        self.objective = objective
        #: (16, 16) probabilities of keeping subset S of present set A (``scenario_sampling``); default uniform.
        self.subset_table = subset_probabilities([], "uniform") if subset_table is None else subset_table
        object.__setattr__(self, "frozen_mae", with_grad_disabled(mae) if mae is not None else None)

    def subsets(self, available: Tensor, generator: torch.Generator) -> Tensor:
        """A random non-empty subset of each sample's present set, drawn from ``subset_table``."""
        return draw_subsets(available, self.subset_table, generator)

    def views(self, batch: dict, generator: torch.Generator) -> Views:
        """Draw the method's views of the batch and run the segmenter once over both (or one, zero-fill)."""
        x, box, brain = batch["image"], batch["box"], batch["brain"]
        available = batch["available"].bool()
        n = x.shape[0]
        if self.objective == ZERO_FILL:
            subset = self.subsets(available, generator)
            inputs = complete_inputs(None, x, subset, box, brain)
            teacher = torch.ones(n, dtype=torch.bool, device=x.device)
            outputs = self.segmenter(inputs, scenario_indices(subset))
            return Views(outputs=outputs, teacher=teacher, masks=subset, batch=n)
        if self.objective == CO_DISTILLATION:
            first, second = available, self.subsets(available, generator)
            teacher_prompt = (torch.full((n,), FULL_SCENARIO.index, device=x.device)
                              if self.cfg.teacher_prompt == "full" else scenario_indices(first))
            prompts = torch.cat([teacher_prompt, scenario_indices(second)])
            teacher = torch.ones(n, dtype=torch.bool, device=x.device)
        else:  # two-view self-distillation: two dropout views, the better-informed one teaches
            first, second = self.subsets(available, generator), self.subsets(available, generator)
            prompts = torch.cat([scenario_indices(first), scenario_indices(second)])
            teacher = first.sum(1) >= second.sum(1)
        masks = torch.cat([first, second])
        inputs = complete_inputs(self.frozen_mae, torch.cat([x, x]), masks, torch.cat([box, box]), torch.cat([brain, brain]))
        outputs = self.segmenter(inputs, prompts)
        return Views(outputs=outputs, teacher=teacher, masks=masks, batch=n)

    def losses(self, views: Views, label: Tensor) -> dict[str, Tensor]:
        """The weighted terms and their total; zero-weight terms are absent."""
        cfg = self.cfg
        weights = tuple(cfg.deep_supervision_weights)
        terms: dict[str, Tensor] = {}
        weighted: list[Tensor] = []
        if self.objective == ZERO_FILL:
            terms["seg"] = segmentation_loss(views.outputs["logits"], views.outputs["deep"], label, weights)
            return {"loss": terms["seg"], **terms}
        teacher_logits, student_logits = views.split("logits")
        teacher_deep, student_deep = views.split_deep()
        if cfg.w_seg_teacher > 0:
            terms["seg_teacher"] = segmentation_loss(teacher_logits, teacher_deep, label, weights)
            weighted.append(cfg.w_seg_teacher * terms["seg_teacher"])
        if cfg.w_seg_student > 0:
            terms["seg_student"] = segmentation_loss(student_logits, student_deep, label, weights)
            weighted.append(cfg.w_seg_student * terms["seg_student"])
        if cfg.w_logit_distill > 0:
            terms["logit_distill"] = logit_distillation(student_logits, teacher_logits.detach(), cfg.distill_kind, cfg.temperature)
            weighted.append(cfg.w_logit_distill * terms["logit_distill"])
        if cfg.w_feat_distill > 0:
            teacher_feat, student_feat = views.split("bottleneck")
            terms["feat_distill"] = feature_distillation(student_feat, teacher_feat.detach())
            weighted.append(cfg.w_feat_distill * terms["feat_distill"])
        if not weighted:
            raise ValueError("every stage-2 loss weight is 0: nothing to train")
        return {"loss": torch.stack(weighted).sum(), **terms}

    def forward(self, batch: dict, generator: torch.Generator) -> dict[str, Tensor]:
        return self.losses(self.views(batch, generator), batch["label"])


def train_seg(
    cfg: RunConfig, split_path: str | Path, mae_dir: str | Path | None, out_dir: str | Path, resume: bool = False, *, device="auto"
) -> Path:
    """Train the segmenter on the split's training cases; returns ``out_dir/model.safetensors``.

    Writes ``config.json``, ``checkpoint.pt``, ``tb/``, then ``model.safetensors`` (the segmenter's state dict,
    scenario embeddings included when personalized) and ``embeddings.json`` (the 15 prompt embeddings and the
    text encoder's identity; written when the segmenter uses them). ``mae_dir`` holds stage 1's
    ``model.safetensors`` (ignored unless the method's MAE completes the segmenter's inputs). ``cfg`` is set up
    for its method first (``methods.configure``, idempotent) and validated.
    """
    from ..nets.build import build_models

    cfg = configure(cfg)
    cfg.validate()
    runtime = init_runtime(device)
    out_dir = Path(out_dir)
    method = get_method(cfg.method)
    mae_path = Path(mae_dir) / MODEL_FILE if mae_dir is not None else None
    if method.completes_inputs and (mae_path is None or not mae_path.is_file()):
        raise FileNotFoundError(f"method {method.name!r} needs a trained MAE: no {mae_path}; run train-mae first")
    if runtime.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(out_dir / CONFIG_FILE)

    embeddings, identity = None, None
    if method.personalizes and cfg.seg.personalize != "none" and cfg.seg.scenario_code == "text":
        from ..nets.text_encoder import scenario_embeddings

        embeddings, identity = scenario_embeddings(cfg.seg.text)
    train_cases = load_split_cases(cfg, split_path, "train", runtime)
    if not train_cases:
        raise ValueError(f"{split_path}: the split has no training cases")

    from ..data.dataset import TrainingCrops

    optim = cfg.optim_seg
    seed_everything(cfg.seed + 1)  # identical initial weights on every rank; not the MAE's draws
    mae, segmenter = build_models(cfg, embeddings)
    if not method.completes_inputs:  # no MAE, or one for display only: the segmenter trains without it
        mae = None
    if mae is not None:
        load_weights(mae, mae_path)
        if cfg.seg.init_from_mae:
            segmenter.init_from_mae(mae)
        place_on_device(mae, runtime.device)
    table = subset_probabilities([case.available for case in train_cases], cfg.seg.student_sampling)
    objective = SegObjective(segmenter, mae, cfg.seg, method.objective, table)
    dataset = TrainingCrops(train_cases, cfg.data, seed=cfg.seed, length=optim.steps * optim.batch_size * runtime.world_size)
    result = train_loop(
        name="seg", objective=objective, dataset=dataset, optim=optim, out_dir=out_dir, seed=cfg.seed + 1,
        runtime=runtime, resume=resume, config=cfg.fingerprint("seg"), num_workers=cfg.data.num_workers,
    )
    path = out_dir / MODEL_FILE
    if runtime.is_main:
        save_weights(segmenter, path, metadata={"stage": "seg", "method": method.name, "steps": result.step})
        if embeddings is not None:
            atomic_write_json(out_dir / EMBEDDINGS_FILE, {"embeddings": embeddings.tolist(), "identity": identity})
    barrier(runtime)
    return path
