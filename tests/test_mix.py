import pytest

from varireal.mixing import candidates, condition, condition_and_attribute, infeasible_count, select
from varireal.params import MixParams, ParamError
from varireal.records import ManifestRow, SplitRow


def fake_pool(classes=("a", "b"), per=(30, 30)):
    real = [SplitRow(f"r/{c}{i}.png", f"m/{c}{i}.png", l, c) for l, c in enumerate(classes) for i in range(3)]
    manifest = [
        ManifestRow(f"s/{c}/{f}/{attr}{i}.png", f"r/{c}0.png", c, l, attr, f, "v", i, "composite")
        for l, c in enumerate(classes) for f, n in zip(("feasible", "infeasible"), per)
        for attr in ("background", "color", "texture") for i in range(n // 3)
    ]
    return real, candidates(manifest)


@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_mix_has_exactly_the_requested_ratio_per_class(ratio):
    real, manifest = fake_pool()
    rows = select(real, manifest, MixParams(infeasible_ratio=ratio, synthetic_per_class=20), seed=0)
    for c in ("a", "b"):
        synthetic = [r for r in rows if r.class_name == c and r.kind == "synthetic"]
        assert len(synthetic) == 20
        assert sum(r.feasibility == "infeasible" for r in synthetic) == ratio * 20
    assert sum(r.kind == "real" for r in rows) == 6
    assert len({r.path for r in rows}) == len(rows)


def test_rounding_is_half_up():
    assert infeasible_count(0.5, 5) == 3
    assert infeasible_count(0.1, 4) == 0
    assert infeasible_count(0.3, 10) == 3


def test_attribute_filter_and_condition():
    real, manifest = fake_pool()
    rows = select(real, manifest, MixParams(attribute="color", infeasible_ratio=0.5, synthetic_per_class=6), seed=0)
    assert {r.attribute for r in rows if r.kind == "synthetic"} == {"color"}
    assert condition(MixParams(synthetic_per_class=0)) == "real-only"
    assert condition(MixParams(infeasible_ratio=0)) == "feasible"
    assert condition(MixParams(infeasible_ratio=1)) == "infeasible"
    assert condition(MixParams(infeasible_ratio=0.3)) == "mixed"
    # A real-only model trains on no edit: whatever mix.attribute says, its attribute is "none".
    assert condition_and_attribute(MixParams(synthetic_per_class=0, attribute="color")) == ("real-only", "none")
    assert condition_and_attribute(MixParams(infeasible_ratio=0.3, attribute="color")) == ("mixed", "color")


def test_mix_is_deterministic_in_seed():
    real, manifest = fake_pool()
    params = MixParams(infeasible_ratio=0.5, synthetic_per_class=10)
    assert select(real, manifest, params, 0) == select(real, manifest, params, 0)
    assert select(real, manifest, params, 0) != select(real, manifest, params, 1)


def test_real_only_and_not_enough_edits():
    real, manifest = fake_pool()
    rows = select(real, manifest, MixParams(synthetic_per_class=0), seed=0)
    assert {r.kind for r in rows} == {"real"}
    with pytest.raises(ParamError, match="mix.synthetic_per_class"):
        select(real, manifest, MixParams(attribute="color", synthetic_per_class=25), seed=0)
    with pytest.raises(ParamError, match="mix.include_real"):
        select(real, manifest, MixParams(synthetic_per_class=0, include_real=False), seed=0)


@pytest.mark.parametrize("settings, trained, expected", [
    ({"synthetic_per_class": 0}, True, ("real-only", "none")),
    ({"attribute": "color", "include_real": False}, True, ("synthetic-feasible", "color")),
    ({"attribute": "color", "include_real": False, "infeasible_ratio": 1}, True, ("synthetic-infeasible", "color")),
    ({"attribute": "color", "include_real": False, "infeasible_ratio": 0.5}, True, ("synthetic-mixed", "color")),
    ({"attribute": "color", "infeasible_ratio": 0.5}, True, ("mixed", "color")),
    ({"attribute": "color", "synthetic_per_class": 0}, False, ("zero-shot", "none")),
    ({"attribute": "color", "infeasible_ratio": 1}, False, ("zero-shot", "none")),  # untrained: the data is unused
])
def test_synthetic_only_and_zero_shot_conditions(settings, trained, expected):
    assert condition_and_attribute(MixParams(**settings), trained=trained) == expected


def test_synthetic_only_mix_has_no_real_image():
    real, manifest = fake_pool()
    rows = select(real, manifest, MixParams(include_real=False, synthetic_per_class=4), seed=0)
    assert {r.kind for r in rows} == {"synthetic"} and len(rows) == 8


@pytest.mark.parametrize("ratio, infeasible, feasible", [(0.0, 0, 9), (1.0, 6, 0), (0.5, 3, 3)])
def test_all_takes_every_edit_of_the_attribute(ratio, infeasible, feasible):
    # per class: 9 feasible and 6 infeasible colour edits; a mixed ratio splits the smaller pool (6)
    real, manifest = fake_pool(per=(27, 18))
    rows = select(real, manifest, MixParams(attribute="color", infeasible_ratio=ratio, synthetic_per_class="all"), 0)
    for c in ("a", "b"):
        synthetic = [r for r in rows if r.class_name == c and r.kind == "synthetic"]
        assert sum(r.feasibility == "infeasible" for r in synthetic) == infeasible
        assert sum(r.feasibility == "feasible" for r in synthetic) == feasible
