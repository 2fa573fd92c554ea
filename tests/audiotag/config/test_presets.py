"""audiotag/config/presets.py: the named presets, overrides by a stage's name or index,
``stages.+``, and the debug preset the tests train on."""

from audiotag.config import PRESETS, load_config, parse_override


def test_the_reference_recipe_is_two_stages_curated_starting_from_noisy() -> None:
    config = load_config("reference")
    assert config.stage_names == ("noisy", "curated")
    noisy, curated = config.stages
    assert noisy.subsets == ("noisy",) and noisy.init is None
    assert curated.subsets == ("curated",) and curated.init == "noisy" and curated.mixup
    assert [c.epochs for c in noisy.cycles] == [10, 10] and curated.epochs == 50
    assert config.last_stage is curated


def test_a_stage_is_reached_by_its_name_or_its_index() -> None:
    by_name = load_config("demo", {"curated.batch_size": 8})
    by_index = load_config("demo", {"stages.1.batch_size": 8})
    assert by_name == by_index and by_name.stage("curated").batch_size == 8
    assert by_name.stage("noisy") == load_config("demo").stage("noisy")


def test_a_stage_is_appended_with_stages_plus() -> None:
    key, value = parse_override(
        'stages.+={"name": "plus", "subsets": ["curated", "noisy"], "init": "curated",'
        ' "cycles": [{"epochs": 2, "lr": 0.001}]}'
    )
    config = load_config("demo", {key: value})
    assert config.stage_names == ("noisy", "curated", "plus")
    assert config.lineage("plus") == (
        config.stage("plus"),
        config.stage("curated"),
        config.stage("noisy"),
    )


def test_every_preset_validates_and_debug_is_one_epoch_per_stage() -> None:
    for name in PRESETS:
        assert load_config(name).preset == name
    debug = load_config("debug")
    assert all(st.epochs == 1 and st.min_steps == 0 for st in debug.stages)


def test_no_demo_stage_from_scratch_takes_only_a_few_steps_on_a_small_subset() -> None:
    # 120 clips of a user's small noisy set: one pass a batch is 3 steps an epoch, and
    # the stage ended at chance; every stage that starts from random weights has a floor.
    for preset in ("demo", "demo_plus"):
        for st in load_config(preset).stages:
            if st.init is not None:
                continue
            steps = st.batches_per_epoch(120, from_scratch=True) * st.epochs
            assert steps >= 150, (preset, st.name, steps)


def test_the_plus_presets_add_a_selection_stage_after_their_base() -> None:
    for preset in ("plus", "demo_plus"):
        config = load_config(preset)
        assert config.stage_names == ("noisy", "curated", "plus")
        third = config.last_stage
        assert third.noisy_selection is not None and third.init == "curated" and third.mixup
        assert third.subsets == ("curated",)
        # The stages before it are the base preset's.
        base = load_config("reference" if preset == "plus" else "demo")
        assert config.stages[:2] == base.stages
    assert all(st.noisy_selection is None for st in load_config("reference").stages)
