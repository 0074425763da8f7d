"""Stage 1: train the multimodal masked autoencoder with distribution approximation (METHOD.md, "Stage 1").

Each step, for a batch of crops with present sequences A:
- the quantile EMA (population prior) is updated from the real intensities of the present sequences (no grad;
  averaged over ranks under torchrun);
- two independent visibility draws (views a and b, ``random_visibility``) are reconstructed (in one batch);
- loss = mean over views of L_rec (present sequences) + w_pop * mean over views of L_pop (absent sequences)
  + w_cons * L_cons (absent sequences, the less-informed view pulled toward the detached other)
  + w_fill_reg * smoothness of the learned fill.
With ``mae.views = 1`` (allowed only when ``w_cons == 0``) only view a is drawn; by default both are, also
without L_cons, so that an ablation of L_cons changes only that term.

Validation (rank 0, every ``val_every`` steps and at the end) on the split's val cases, whole volumes padded
to a multiple of ``net.size_divisor``: each present sequence is held out alone and completed from the others
(``MultimodalMAE.complete``); PSNR and SSIM (MONAI) inside the brain box, against the learned fill alone as
the baseline. Written to ``val/step_XXXXXX.json`` and TensorBoard (with a middle-slice preview grid).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..config import MAEConfig, RunConfig
from ..constants import MODALITIES
from ..nets.losses import consistency_loss, fill_regularizer, population_loss, reconstruction_loss
from ..nets.mae import MultimodalMAE, random_visibility
from ..fileio import atomic_write_json
from ..layout import CONFIG_FILE, MODEL_FILE
from ..methods import configure, get_method
from .cases import load_split_cases, save_weights
from .distributed import Runtime, barrier, init_runtime
from .engine import seed_everything, train_loop

if TYPE_CHECKING:
    from ..data.preprocess import PreprocessedCase


class MAEObjective(nn.Module):
    """One stage-1 training step as a module: ``forward(batch, generator) -> {"loss", "rec", "pop", ...}``.

    batch: ``image`` (B, 4, D, H, W), ``available`` (B, 4) bool, ``brain`` (B, 1, D, H, W), ``box`` (B, 3, 2).
    Terms whose weight is 0 are neither computed nor returned.
    """

    def __init__(self, mae: MultimodalMAE, cfg: MAEConfig):
        super().__init__()
        if cfg.views not in (1, 2) or (cfg.w_cons > 0 and cfg.views != 2):
            raise ValueError(f"mae.views must be 1 or 2, and 2 when L_cons is on (w_cons {cfg.w_cons}, views {cfg.views})")
        self.mae = mae
        self.cfg = cfg

    @property
    def n_views(self) -> int:
        return self.cfg.views

    @torch.no_grad()
    def update_population_prior(self, x: Tensor, brain: Tensor, available: Tensor) -> None:
        """EMA step of the quantiles from the real intensities of the present sequences.

        Under torch.distributed the ranks' updates are averaged over the ranks that saw each sequence, so
        every rank keeps the same prior (the EMA step of the global batch, up to averaging quantiles).
        """
        ema = self.mae.quantile_ema
        if not (dist.is_available() and dist.is_initialized()):
            ema.update(x, brain, available)
            return
        old = ema.quantiles.clone()
        ema.update(x, brain, available)
        changed = (ema.quantiles != old).any(1, keepdim=True)
        packed = torch.cat([(ema.quantiles - old) * changed, changed.to(old.dtype)], dim=1)
        dist.all_reduce(packed)
        count = packed[:, -1:]
        ema.quantiles.copy_(old + packed[:, :-1] / count.clamp(min=1))
        ema.initialized.copy_(ema.initialized | (count[:, 0] > 0))

    def forward(self, batch: dict, generator: torch.Generator) -> dict[str, Tensor]:
        cfg = self.cfg
        x, brain, box = batch["image"], batch["brain"], batch["box"]
        available = batch["available"].bool()
        shape = tuple(x.shape[2:])
        if cfg.w_pop > 0:
            self.update_population_prior(x, brain, available)

        # Both views in one batch of n_views * B (GroupNorm is per sample, so this equals two passes).
        visible = [random_visibility(available, shape, cfg.patch_size, cfg.mask_ratio, generator) for _ in range(self.n_views)]
        repeat = (self.n_views,) + (1,) * (x.dim() - 1)
        joint = self.mae(x.repeat(repeat), torch.cat(visible), box.repeat(self.n_views, 1, 1))
        recon = list(joint.chunk(self.n_views))

        terms: dict[str, Tensor] = {}
        terms["rec"] = sum(
            reconstruction_loss(r, x, v, brain, available, cfg.w_rec_visible) for r, v in zip(recon, visible)
        ) / self.n_views
        total = terms["rec"]
        if cfg.w_pop > 0:
            terms["pop"] = sum(population_loss(r, brain, available, self.mae.quantile_ema, cfg.pop_estimator) for r in recon) / self.n_views
            total = total + cfg.w_pop * terms["pop"]
        if cfg.w_cons > 0:
            terms["cons"] = consistency_loss(recon[0], recon[1], visible[0], visible[1], brain, available)
            total = total + cfg.w_cons * terms["cons"]
        if cfg.w_fill_reg > 0:
            terms["fill_reg"] = fill_regularizer(self.mae.fill)
            total = total + cfg.w_fill_reg * terms["fill_reg"]
        return {"loss": total, **terms}


def _slice_for_display(volume: Tensor) -> Tensor:
    """Middle axial slice of a (D, H, W) z-scored volume, mapped from [-3, 3] to [0, 1]."""
    return ((volume[volume.shape[0] // 2] + 3.0) / 6.0).clamp(0, 1)


class MAEValidator:
    """Held-out-sequence reconstruction quality on whole validation cases (see the module docstring)."""

    def __init__(self, cases: list[PreprocessedCase], out_dir: str | Path, device: torch.device, multiple: int = 8):
        from ..data.dataset import ValidationCases

        self.cases = ValidationCases(cases, multiple=multiple)
        self.out_dir = Path(out_dir)
        self.device = device

    @staticmethod
    def _scores(prediction: Tensor, target: Tensor) -> tuple[float, float]:
        """PSNR (dB) and 3-D SSIM (Gaussian window 7^3, sigma 1.5) of one (D, H, W) volume; data range = the
        target's range (max - min)."""
        from monai.metrics import PSNRMetric, SSIMMetric

        data_range = float(target.max() - target.min()) or 1.0
        p, t = prediction[None, None].float(), target[None, None].float()
        psnr = float(PSNRMetric(max_val=data_range)(p, t).mean())
        smallest = min(target.shape)
        win = 7 if smallest >= 7 else max(3, (smallest - 1) // 2 * 2 + 1)  # odd, no larger than the volume
        ssim = float(SSIMMetric(spatial_dims=3, data_range=data_range, win_size=win)(p, t).mean())
        return psnr, ssim

    @torch.no_grad()
    def evaluate(self, mae: MultimodalMAE) -> tuple[dict, Tensor | None]:
        """{"sequences": {name: {psnr, ssim, fill_psnr, fill_ssim, n_cases}}, "cases": {...}} and a preview."""
        per_sequence: dict[str, list[dict]] = {m: [] for m in MODALITIES}
        per_case: dict[str, dict] = {}
        preview_rows = []
        for index in range(len(self.cases)):
            item = self.cases[index]
            z, y, x = item["shape"].tolist()
            image = item["image"][None].to(self.device)
            box = item["box"][None].to(self.device)
            brain = item["brain"][0, :z, :y, :x].to(self.device) > 0
            available = item["available"].bool()
            fill = mae.fill(box, tuple(image.shape[2:]))[0]
            per_case[item["case_id"]] = {}
            for m, name in enumerate(MODALITIES):
                if not available[m] or available.sum() < 2:
                    continue
                others = available.clone()
                others[m] = False
                held_out = image.clone()
                held_out[:, m] = 0.0
                brain_box = item["brain"][None].to(self.device)
                completed = mae.complete(held_out, others[None].to(self.device), box, brain_box)[0, m, :z, :y, :x]
                target = image[0, m, :z, :y, :x]
                fill_only = torch.where(brain, fill[m, :z, :y, :x], torch.zeros_like(completed))
                psnr, ssim = self._scores(completed, target)
                fill_psnr, fill_ssim = self._scores(fill_only, target)
                scores = {"psnr": psnr, "ssim": ssim, "fill_psnr": fill_psnr, "fill_ssim": fill_ssim}
                per_sequence[name].append(scores)
                per_case[item["case_id"]][name] = scores
                if index == 0:
                    preview_rows.append(torch.cat([_slice_for_display(v) for v in (target, completed, fill_only)], dim=1))
        sequences = {}
        for name, rows in per_sequence.items():
            if rows:
                sequences[name] = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}
                sequences[name]["n_cases"] = len(rows)
        preview = torch.cat(preview_rows, dim=0)[None].cpu() if preview_rows else None
        return {"sequences": sequences, "cases": per_case}, preview

    def __call__(self, objective: MAEObjective, step: int, writer) -> dict[str, float]:
        result, preview = self.evaluate(objective.mae)
        result = {"step": step, **result}
        atomic_write_json(self.out_dir / f"step_{step:06d}.json", result)
        summary = {}
        for name, scores in result["sequences"].items():
            for key in ("psnr", "ssim", "fill_psnr", "fill_ssim"):
                summary[f"{key}/{name}"] = scores[key]
        if result["sequences"]:
            for key in ("psnr", "fill_psnr", "ssim"):
                summary[f"{key}/mean"] = sum(s[key] for s in result["sequences"].values()) / len(result["sequences"])
        if writer is not None:
            for key, value in summary.items():
                if math.isfinite(value):
                    writer.add_scalar(f"val/{key}", value, step)
            if preview is not None:  # rows: held-out sequences; columns: target | completion | fill alone
                writer.add_image("val/target_completion_fill", preview, step)
        return {k: v for k, v in summary.items() if k.endswith("/mean")}


def train_mae(cfg: RunConfig, split_path: str | Path, out_dir: str | Path, resume: bool = False, *, device="auto") -> Path:
    """Train the MAE on the split's training cases; returns ``out_dir/model.safetensors``.

    Writes ``config.json`` first, then ``checkpoint.pt`` (engine), ``tb/``, ``val/step_*.json`` and finally
    ``model.safetensors`` (the MultimodalMAE state dict, quantile EMA included; rank 0 only). ``cfg`` is set
    up for its method first (``methods.configure``, idempotent: e.g. m3ae-style's L_rec only) and validated.
    """
    cfg = configure(cfg)
    cfg.validate()
    if not get_method(cfg.method).has_mae:
        raise ValueError(f"method {cfg.method!r} has no stage 1 (MAE) to train")
    runtime = init_runtime(device)
    mae, steps = fit_mae(cfg, split_path, out_dir, resume, runtime)
    path = Path(out_dir) / MODEL_FILE
    if runtime.is_main:
        save_weights(mae, path, metadata={"stage": "mae", "steps": steps})
    barrier(runtime)
    return path


def fit_mae(cfg: RunConfig, split_path: str | Path, out_dir: str | Path, resume: bool, runtime: Runtime) -> tuple[MultimodalMAE, int]:
    """The training part of ``train_mae``: (the trained MAE on this rank, steps done); writes all but the weights."""
    out_dir = Path(out_dir)
    if runtime.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(out_dir / CONFIG_FILE)
    train_cases = load_split_cases(cfg, split_path, "train", runtime)
    if not train_cases:
        raise ValueError(f"{split_path}: the split has no training cases")
    val_cases = load_split_cases(cfg, split_path, "val", runtime)

    from ..data.dataset import TrainingCrops

    optim = cfg.optim_mae
    seed_everything(cfg.seed)  # identical initial weights on every rank and every run
    mae = MultimodalMAE(cfg.net, cfg.mae)
    objective = MAEObjective(mae, cfg.mae)
    dataset = TrainingCrops(train_cases, cfg.data, seed=cfg.seed, length=optim.steps * optim.batch_size * runtime.world_size)
    validator = None
    if val_cases and runtime.is_main:
        validator = MAEValidator(val_cases, out_dir / "val", runtime.device, multiple=cfg.net.size_divisor)
    elif runtime.is_main:
        print("[mae] the split has no validation cases: no reconstruction validation", flush=True)
    if runtime.is_main and objective.n_views == 1:
        print("[mae] mae.views = 1: one masked view per sample (no consistency term)", flush=True)
    result = train_loop(
        name="mae", objective=objective, dataset=dataset, optim=optim, out_dir=out_dir, seed=cfg.seed,
        runtime=runtime, resume=resume, config=cfg.fingerprint("mae"), validate=validator,
        num_workers=cfg.data.num_workers,
    )
    return mae, result.step
