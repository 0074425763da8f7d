"""The method registry: each method's settings, idempotence, the equal-compute zero-fill, and what the
networks and stage 2 take from it."""

from __future__ import annotations

import pytest

from AllStageTraining.config import ConfigError, preset
from AllStageTraining.methods import (
    CO_DISTILLATION,
    DEFAULT_METHOD,
    METHODS,
    SELF_DISTILLATION,
    TRAINED_AS_AT_TWICE_THE_BUDGET,
    ZERO_FILL,
    Method,
    configure,
    get_method,
    method_names,
)
from AllStageTraining.pipeline.experiment import cell_config


def test_the_registry_holds_the_compared_methods_in_table_order():
    assert method_names()[:4] == ("ours", "zero-fill", "zero-fill-long", "m3ae-style")
    assert {"ours-no-da", "ours-no-distill", "ours-no-personal"} <= set(method_names())
    assert all(METHODS[name].name == name and METHODS[name].description for name in method_names())
    assert [m for m in method_names() if not get_method(m).has_mae] == ["zero-fill", "zero-fill-long",
                                                                       "m3ae-style-no-mae", "ours-no-mae"]
    with pytest.raises(ValueError, match="unknown method 'unet'; expected one of ours, zero-fill"):
        get_method("unet")


def test_each_method_switches_off_its_own_part_only():
    base = preset("tiny")
    cfgs = {m: configure(base, m) for m in method_names()}
    assert all(cfg.method == name for name, cfg in cfgs.items())
    assert cfgs["ours"].to_dict() == base.with_fields({"method": "ours"}).to_dict()
    assert base.method == DEFAULT_METHOD
    assert (cfgs["ours-no-da"].mae.w_pop, cfgs["ours-no-da"].mae.w_cons) == (0.0, 0.0)
    assert (cfgs["m3ae-style"].mae.w_pop, cfgs["m3ae-style"].mae.w_cons) == (0.0, 0.0)
    assert (cfgs["ours-no-distill"].seg.w_logit_distill, cfgs["ours-no-distill"].seg.w_feat_distill) == (0.0, 0.0)
    for term in ("logit", "feat"):  # each term of co-distillation alone, the other kept at its weight
        assert cfgs[f"ours-no-{term}-distill"].to_dict() == cfgs["ours"].with_fields(
            {"method": f"ours-no-{term}-distill", f"seg.w_{term}_distill": 0.0}).to_dict()
    assert cfgs["ours-no-personal"].seg.personalize == "none"
    assert cfgs["ours-no-personal-no-distill"].to_dict() == cfgs["ours-no-personal"].with_fields(
        {"method": "ours-no-personal-no-distill", "seg.w_logit_distill": 0.0, "seg.w_feat_distill": 0.0}).to_dict()
    assert cfgs["ours-no-init"].to_dict() == cfgs["ours"].with_fields({"method": "ours-no-init",
                                                                       "seg.init_from_mae": False}).to_dict()
    assert {cfgs[m].seg.personalize for m in ("zero-fill", "m3ae-style")} == {"none"}
    for name, cfg in cfgs.items():  # everything a comparison holds fixed is the same for every method
        assert cfg.data == base.data and cfg.net == base.net and cfg.seed == base.seed, name
        if name not in ("zero-fill-long", "ours-no-mae", DEFAULT_METHOD):
            assert cfg.optim_mae == base.optim_mae and cfg.optim_seg == base.optim_seg, name
    assert cfgs["ours-no-da"].seg == cfgs["ours"].seg and cfgs["ours-no-distill"].mae == cfgs["ours"].mae


def test_the_m3ae_style_ladder_changes_one_part_per_rung():
    """m3ae-style -> -no-init (random initial weights) -> -no-mae (zero-filled views, so no MAE to start from)
    -> zero-fill (one view, no distillation): each rung takes one part off the one before."""
    base = preset("tiny")
    full, no_init, no_mae, zero = (configure(base, m) for m in ("m3ae-style", "m3ae-style-no-init",
                                                                 "m3ae-style-no-mae", "zero-fill"))
    assert full.seg.init_from_mae and base.seg.init_from_mae
    assert no_init.to_dict() == full.with_fields({"method": "m3ae-style-no-init", "seg.init_from_mae": False}).to_dict()
    assert [(get_method(m).has_mae, get_method(m).objective, get_method(m).completes_inputs)
            for m in ("m3ae-style-no-init", "m3ae-style-no-mae", "zero-fill")] == [
        (True, SELF_DISTILLATION, True), (False, SELF_DISTILLATION, False), (False, ZERO_FILL, False)]
    assert no_mae.seg == zero.seg == full.seg and no_mae.optim_seg == zero.optim_seg == full.optim_seg
    no_mae.validate()  # no stage 1 to check
    assert [get_method(m).ablates for m in ("m3ae-style-no-init", "m3ae-style-no-mae")] == ["m3ae-style",
                                                                                       "m3ae-style-no-init"]


def test_the_default_segments_as_ours_no_mae_and_keeps_the_mae_for_display():
    base = preset("tiny").with_fields({"optim_mae.steps": 30, "optim_seg.steps": 20})
    display, no_mae = configure(base, DEFAULT_METHOD), configure(base, "ours-no-mae")
    assert (display.optim_mae.steps, display.optim_seg.steps, display.optim_seg.stage1_steps) == (30, 50, 30)
    assert no_mae.optim_seg.steps == 50  # the same segmenter budget as ours-no-mae, and the MAE trains too
    again = configure(display.with_fields({"optim_mae.steps": 10}))  # a changed stage 1 is followed, added once
    assert (again.optim_seg.steps, again.optim_seg.stage1_steps) == (30, 10)
    # configured again for another method, the steps it added are taken off first (the CLI configures for the default)
    assert (configure(display, "ours").optim_seg.steps, configure(display, "ours").optim_seg.stage1_steps) == (20, 0)
    assert configure(display, "zero-fill-long").optim_seg.steps == 50
    assert display.seg == no_mae.seg and display.net == no_mae.net and display.data == no_mae.data
    method = get_method(DEFAULT_METHOD)
    assert (method.has_mae, method.objective, method.personalizes, method.completes_inputs) == (True, ZERO_FILL, True,
                                                                                                False)
    assert [m for m in method_names() if get_method(m).completes_inputs] == [
        m for m in method_names() if get_method(m).has_mae and m != DEFAULT_METHOD]


def test_configure_is_idempotent_for_every_method():
    base = preset("tiny").with_fields({"optim_mae.steps": 30, "optim_seg.steps": 20})
    for name in method_names():
        once = configure(base, name)
        assert configure(once).to_dict() == once.to_dict(), name
        assert configure(configure(once, "ours"), name).seg.personalize == once.seg.personalize


def test_zero_fill_long_gets_the_steps_of_both_stages():
    base = preset("tiny").with_fields({"optim_mae.steps": 30, "optim_seg.steps": 20})
    long = configure(base, "zero-fill-long")
    assert (long.optim_seg.steps, long.optim_mae.steps) == (50, 0)
    long.validate()  # no stage 1, so its step count may be 0
    with pytest.raises(ConfigError, match="optim_mae: steps and batch size must be at least 1"):
        long.with_fields({"method": "ours"}).validate()
    assert get_method("zero-fill-long").objective == ZERO_FILL
    no_mae = configure(base, "ours-no-mae")  # zero-fill-long with the hyper-network: only personalization differs
    assert (no_mae.optim_seg.steps, no_mae.optim_mae.steps, no_mae.seg.personalize) == (50, 0, "both")
    assert no_mae.to_dict() == long.with_fields({"method": "ours-no-mae", "seg.personalize": "both"}).to_dict()


def test_a_cell_taken_from_twice_the_budget_trains_exactly_as_the_methods_own():
    """``compare`` takes zero-fill's cells at 2b steps per stage for zero-fill-long's at b: the two configurations
    may differ only in the name and in the steps of the stage 1 that neither has."""
    for method, twin in TRAINED_AS_AT_TWICE_THE_BUDGET.items():
        assert not get_method(method).has_mae and not get_method(twin).has_mae
        base = configure(preset("tiny"), DEFAULT_METHOD)  # an experiment's base, as experiment configures it
        own, doubled = cell_config(base, method, 3, 40), cell_config(base, twin, 3, 80)
        assert own.with_fields({"method": twin, "optim_mae.steps": 80}).to_dict() == doubled.to_dict()


def test_every_ablation_names_a_registered_method_and_the_default_is_none():
    ablations = {m: get_method(m).ablates for m in method_names() if get_method(m).ablates}
    assert set(ablations.values()) <= set(method_names()) and DEFAULT_METHOD not in ablations
    second_order = {"ours-no-personal-no-distill": "ours-no-personal"}  # an ablation of an ablation
    assert {m: ablations[m] for m in second_order} == second_order
    assert {m for m, parent in ablations.items() if parent == "ours"} == {
        m for m in method_names() if m.startswith("ours-") and m != DEFAULT_METHOD} - set(second_order)
    assert not any(get_method(m).ablates for m in ("ours", "zero-fill", "zero-fill-long", "m3ae-style"))


def test_a_new_entry_is_one_line_and_inconsistent_ones_are_refused():
    added = Method("ours-no-cons", "ours without L_cons", has_mae=True, objective=CO_DISTILLATION,
                   personalizes=True, overrides={"mae.w_cons": 0.0})
    assert added.settings(preset("tiny")) == {"method": "ours-no-cons", "mae.w_cons": 0.0}
    with pytest.raises(TypeError):
        added.overrides["mae.w_pop"] = 0.0  # read-only
    assert not Method("zero-views", "two zero-filled views", has_mae=False, objective=SELF_DISTILLATION,
                      personalizes=False).completes_inputs
    with pytest.raises(ValueError, match="needs the stage-1 MAE"):
        Method("bad", "co-distillation without an MAE", has_mae=False, objective=CO_DISTILLATION, personalizes=True)
    with pytest.raises(ValueError, match="unknown objective"):
        Method("bad", "?", has_mae=True, objective="magic", personalizes=False)
