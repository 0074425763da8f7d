"""The registry of methods: every trainable method and ablation, each defined once.

A :class:`Method` says whether it has a stage 1 (the multimodal MAE), which stage-2 objective trains its
segmenter, whether the scenario hyper-network personalizes it, and which configuration fields it sets.
A run's configuration names its method in ``RunConfig.method``; everything else asks the registry
(``get_method(cfg.method).has_mae``, ...), never a config field.

Adding a method or an ablation is one more ``Method(...)`` in ``_ENTRIES``::

    Method("ours-no-cons", "ours without the consistency term", has_mae=True, objective=CO_DISTILLATION,
           personalizes=True, overrides={"mae.w_cons": 0.0}, ablates="ours"),

:func:`configure` turns any configuration into the one a method trains with: it applies the static
``overrides`` (dotted field names), then the optional ``derive`` rule, which computes further overrides
from the configuration (for ``zero-fill-long``: the segmenter gets the steps of both stages). Both must be
idempotent, so that configuring twice changes nothing (training calls it again as a guard).

This module imports nothing from the package: ``config``, ``nets``, ``training`` and ``inference`` all use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:
    from .config import RunConfig

#: Stage-2 objectives (``training.stage2.SegObjective``).
CO_DISTILLATION = "co-distillation"  # teacher = real set + MAE completion (full prompt), student = a subset
ZERO_FILL = "dropout zero-fill"  # one view: a random subset of the real sequences, the rest zero
# two dropout views, completed by the MAE (zero where the method has none); the better-informed one teaches
SELF_DISTILLATION = "two-view self-distillation"
OBJECTIVES: tuple[str, ...] = (CO_DISTILLATION, ZERO_FILL, SELF_DISTILLATION)


@dataclass(frozen=True)
class Method:
    """One trainable method.

    name: the registry key (``--method``, ``experiment --methods``, ``RunConfig.method``).
    description: one line for tables and ``--help``.
    has_mae: whether stage 1 (the multimodal MAE) exists; without it, missing sequences are zero.
    objective: the stage-2 objective, one of OBJECTIVES.
    personalizes: whether the scenario hyper-network personalizes the segmenter (else ``seg.personalize``
        is set to "none").
    overrides: dotted config field -> value, e.g. ``{"mae.w_pop": 0.0}``.
    derive: optional rule ``cfg -> {dotted field: value}`` applied after ``overrides``; must be idempotent.
    ablates: for an ablation, the registered method it takes one part off (comparisons pair the two); else None.
    """

    name: str
    description: str
    has_mae: bool
    objective: str
    personalizes: bool
    overrides: Mapping[str, Any] = field(default_factory=dict)
    derive: Callable[["RunConfig"], Mapping[str, Any]] | None = None
    ablates: str | None = None

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"method {self.name!r}: unknown objective {self.objective!r}; expected one of {OBJECTIVES}")
        if self.objective == CO_DISTILLATION and not self.has_mae:
            raise ValueError(f"method {self.name!r}: the {self.objective} objective needs the stage-1 MAE")
        object.__setattr__(self, "overrides", MappingProxyType(dict(self.overrides)))

    @property
    def completes_inputs(self) -> bool:
        """Whether the MAE's completions of the missing sequences feed the segmenter (in training and in
        ``predict``). False for a display-only MAE (a zero-fill objective): the segmenter sees missing sequences
        as zero, is trained without the MAE (nor initialized from it), and the MAE only synthesizes the
        missing sequences for the viewer."""
        return self.has_mae and self.objective != ZERO_FILL

    def settings(self, cfg: "RunConfig") -> dict[str, Any]:
        """Every dotted field this method sets on ``cfg`` (overrides, personalization, then the derived rule). Steps
        another method's rule added to the segmenter's (``optim_seg.stage1_steps``) are taken off first."""
        fields: dict[str, Any] = {"method": self.name}
        if cfg.optim_seg.stage1_steps:
            fields.update({"optim_seg.steps": own_segmenter_steps(cfg), "optim_seg.stage1_steps": 0})
        fields.update(self.overrides)
        if not self.personalizes:
            fields["seg.personalize"] = "none"
        if self.derive is not None:
            fields.update(self.derive(cfg.with_fields(fields)))
        return fields


def _stage1_budget_to_stage2(cfg: "RunConfig") -> dict[str, Any]:
    """Equal compute without an MAE: the segmenter also gets stage 1's steps (idempotent: stage 1 keeps 0)."""
    return {"optim_seg.steps": cfg.optim_mae.steps + cfg.optim_seg.steps, "optim_mae.steps": 0}


def own_segmenter_steps(cfg: "RunConfig") -> int:
    """The segmenter's steps before a method's rule added stage 1's (``optim_seg.stage1_steps``)."""
    return cfg.optim_seg.steps - cfg.optim_seg.stage1_steps


def _stage1_budget_added_to_stage2(cfg: "RunConfig") -> dict[str, Any]:
    """Equal compute with the MAE kept: the segmenter trains its own steps plus stage 1's. ``optim_seg.stage1_steps``
    records what was added, so that configuring again adds it once (and follows a changed stage-1 budget)."""
    return {"optim_seg.steps": own_segmenter_steps(cfg) + cfg.optim_mae.steps,
            "optim_seg.stage1_steps": cfg.optim_mae.steps}


#: m3ae-style's stage 1 (L_rec only, one masked view per step), shared by its ablation that keeps the MAE.
_M3AE_MAE: Mapping[str, Any] = {"mae.w_pop": 0.0, "mae.w_cons": 0.0, "mae.views": 1}

_ENTRIES: tuple[Method, ...] = (
    Method("ours", "MAE with distribution approximation + co-distillation + prompt-driven hyper-network",
           has_mae=True, objective=CO_DISTILLATION, personalizes=True),
    Method("zero-fill", "the same U-Net trained with random sequence dropout, missing channels zero, no MAE",
           has_mae=False, objective=ZERO_FILL, personalizes=False),
    Method("zero-fill-long", "zero-fill with the compute of both stages: optim_mae.steps + optim_seg.steps "
                             "segmenter steps", has_mae=False, objective=ZERO_FILL, personalizes=False,
           derive=_stage1_budget_to_stage2),
    Method("m3ae-style", "MAE with L_rec only (one masked view per step, as M3AE), learned fill, "
                         "self-distillation between two dropout views, no hyper-network", has_mae=True,
           objective=SELF_DISTILLATION, personalizes=False, overrides=_M3AE_MAE),
    Method("m3ae-style-no-init", "m3ae-style with the segmenter's initial weights drawn at random, not copied from "
                                 "the MAE (seg.init_from_mae = false)", has_mae=True, objective=SELF_DISTILLATION,
           personalizes=False, overrides={**_M3AE_MAE, "seg.init_from_mae": False}, ablates="m3ae-style"),
    Method("m3ae-style-no-mae", "m3ae-style-no-init without the MAE: the two dropout views keep their missing "
                                "sequences zero", has_mae=False, objective=SELF_DISTILLATION, personalizes=False,
           ablates="m3ae-style-no-init"),
    Method("ours-no-da", "ours without distribution approximation (mae.w_pop = mae.w_cons = 0; still two masked "
                         "views per step, so that only the two terms change)",
           has_mae=True, objective=CO_DISTILLATION, personalizes=True, overrides={"mae.w_pop": 0.0, "mae.w_cons": 0.0},
           ablates="ours"),
    Method("ours-no-pop", "ours without the population prior (mae.w_pop = 0)", has_mae=True,
           objective=CO_DISTILLATION, personalizes=True, overrides={"mae.w_pop": 0.0}, ablates="ours"),
    Method("ours-no-cons", "ours without cross-view consistency (mae.w_cons = 0)", has_mae=True,
           objective=CO_DISTILLATION, personalizes=True, overrides={"mae.w_cons": 0.0}, ablates="ours"),
    Method("ours-no-distill", "ours without co-distillation (seg.w_logit_distill = seg.w_feat_distill = 0)",
           has_mae=True, objective=CO_DISTILLATION, personalizes=True,
           overrides={"seg.w_logit_distill": 0.0, "seg.w_feat_distill": 0.0}, ablates="ours"),
    Method("ours-no-logit-distill", "ours without the logit term of co-distillation (seg.w_logit_distill = 0)",
           has_mae=True, objective=CO_DISTILLATION, personalizes=True, overrides={"seg.w_logit_distill": 0.0},
           ablates="ours"),
    Method("ours-no-feat-distill", "ours without the bottleneck-feature term of co-distillation "
                                   "(seg.w_feat_distill = 0)", has_mae=True, objective=CO_DISTILLATION,
           personalizes=True, overrides={"seg.w_feat_distill": 0.0}, ablates="ours"),
    Method("ours-no-init", "ours with the segmenter's initial weights drawn at random, not copied from the MAE "
                           "(seg.init_from_mae = false)", has_mae=True, objective=CO_DISTILLATION, personalizes=True,
           overrides={"seg.init_from_mae": False}, ablates="ours"),
    Method("ours-no-personal", "ours without personalization (seg.personalize = none)",
           has_mae=True, objective=CO_DISTILLATION, personalizes=False, ablates="ours"),
    Method("ours-no-personal-no-distill", "ours-no-personal without co-distillation (seg.w_logit_distill = "
                                          "seg.w_feat_distill = 0): whether the distillation terms act through the "
                                          "hyper-network", has_mae=True, objective=CO_DISTILLATION, personalizes=False,
           overrides={"seg.w_logit_distill": 0.0, "seg.w_feat_distill": 0.0}, ablates="ours-no-personal"),
    Method("ours-no-mae", "ours without the MAE and so without co-distillation: the personalized segmenter trained "
                          "by dropout zero-fill for the compute of both stages (zero-fill-long + the hyper-network)",
           has_mae=False, objective=ZERO_FILL, personalizes=True, derive=_stage1_budget_to_stage2, ablates="ours"),
    Method("ours-display-mae", "the default: ours-no-mae's segmenter (personalized, dropout zero-fill, never sees "
                               "an MAE completion, trained for the steps of both stages) for the labels, plus ours' "
                               "stage-1 MAE, which only synthesizes the missing sequences for display",
           has_mae=True, objective=ZERO_FILL, personalizes=True, derive=_stage1_budget_added_to_stage2),
)

#: The method ``RunConfig`` and every command train when none is named: labels from the personalized zero-fill
#: segmenter, which led every method of the science grid (README, Results), and the missing sequences
#: synthesized by the MAE for the viewer.
DEFAULT_METHOD = "ours-display-mae"

#: name -> Method, in the order tables list them.
METHODS: Mapping[str, Method] = MappingProxyType({m.name: m for m in _ENTRIES})
for _m in _ENTRIES:
    if _m.ablates is not None and _m.ablates not in METHODS:
        raise ValueError(f"method {_m.name!r} ablates {_m.ablates!r}, which is not registered")

#: Roles in an experiment's comparison (``evaluation.comparison``): the baselines every method is compared with
#: (paired differences), the methods whose MAE synthesis quality is shown side by side, and the method whose
#: learning curve decides the converged budget.
BASELINES: tuple[str, ...] = ("zero-fill", "zero-fill-long", "m3ae-style")
SYNTHESIS_COMPARED: tuple[str, ...] = ("ours", "m3ae-style")
CONVERGENCE_METHOD = "zero-fill"
#: method -> the method whose cell at twice the budget (steps per stage) trains exactly as its cell would:
#: ``zero-fill-long`` has no MAE and its rule gives the segmenter both stages' steps, so at b steps per stage it is
#: ``zero-fill`` at 2b. ``compare`` takes such cells for the method where a merged grid lacks it.
TRAINED_AS_AT_TWICE_THE_BUDGET: Mapping[str, str] = MappingProxyType({"zero-fill-long": "zero-fill"})


def method_names() -> tuple[str, ...]:
    """Every registered method name, in table order."""
    return tuple(METHODS)


def get_method(name: str) -> Method:
    """The registered method ``name``; ValueError naming the known ones otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; expected one of {', '.join(METHODS)}") from None


def configure(cfg: "RunConfig", name: str | None = None) -> "RunConfig":
    """A copy of ``cfg`` set up for method ``name`` (default: ``cfg.method``): ``method`` set, the method's
    overrides and derived fields applied. Idempotent; every other field is left as it is."""
    method = get_method(name or cfg.method)
    return cfg.with_fields(method.settings(cfg.with_fields({"method": method.name})))
