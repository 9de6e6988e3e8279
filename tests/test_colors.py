"""Colour values carry their colours: every colour value of every shipped bank has RGB values, the tint
paints them (several colours for a coat of several), exactly and the same on any CPU; the prompts file
and the chat models' answers carry them, checked."""

from __future__ import annotations

import colorsys
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from check_repro import forced_kernels
from varireal import colors, datasets, llm, prompts, records, render
from varireal.errors import StageError
from varireal.prompts import FEASIBILITIES, load_bank

BANKS = ["pets", "aircraft", "cars", "flowers102"]
SIDE = 40


def shaded_object() -> tuple[np.ndarray, np.ndarray]:
    """A muted olive disc lit from the left (luminance 0.8-1.2 of its mean) with fine noise, on a grey
    background: a colour none of the banks' values is."""
    y, x = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32)
    mask = (x - SIDE / 2) ** 2 + (y - SIDE / 2) ** 2 < (SIDE * 0.4) ** 2
    light = 1.2 - 0.4 * x / SIDE + np.random.default_rng(0).uniform(-0.03, 0.03, (SIDE, SIDE)).astype(np.float32)
    image = np.full((SIDE, SIDE, 3), 0.5, np.float32)
    image[mask] = np.float32([0.42, 0.45, 0.28]) * light[mask][:, None]
    return image, mask


def bank_palettes() -> list[tuple[str, str, list]]:
    """(bank, value, colours) of every colour value of every shipped bank and of the world."""
    entries = [(bank, value, rgb) for bank in BANKS for value, rgb in load_bank(bank).palette.items()]
    return entries + [("world", value, colors.world_colours(value)) for value in render.COLORS]


def test_every_colour_value_of_every_bank_has_colours():
    for bank in BANKS:
        bank_file = load_bank(bank)
        assert bank_file.unpainted() == [], bank
        used = {value for entry in [bank_file.defaults, *bank_file.groups, *bank_file.classes.values()]
                if entry.color for f in FEASIBILITIES for value in getattr(entry.color, f) or []}
        assert used == set(bank_file.palette), bank  # no entry for a value no list names (a typo)


@pytest.mark.parametrize("bank, value, rgb", bank_palettes(), ids=lambda x: x if isinstance(x, str) else "")
def test_every_colour_value_tints_toward_its_colours(bank, value, rgb):
    image, mask = shaded_object()
    tinted = colors.tint(image, mask, rgb)
    assert np.array_equal(tinted[~mask], image[~mask])
    assert not np.array_equal(render.to_uint8(tinted[mask]), render.to_uint8(image[mask]))
    # Each colour takes an equal share of the object, shaded about the colour: the object's mean is theirs.
    target = np.asarray(rgb, np.float32).mean(axis=0) / 255
    before = np.abs(image[mask].mean(axis=0) - target).max()
    after = np.abs(tinted[mask].mean(axis=0) - target).max()
    assert after < 0.06 and (after < before or before < 0.06), (after, before)
    half = colors.tint(image, mask, rgb, alpha=0.5)
    assert np.allclose(half[mask], 0.5 * image[mask] + 0.5 * tinted[mask], atol=1e-6)


def saturation(rgb) -> float:
    return colorsys.rgb_to_hsv(*(np.asarray(rgb, float) / 255))[1]


def test_blue_coats_are_grey_blue_not_saturated_blue():
    pets = load_bank("pets").palette
    for value in ["blue point", "blue roan", "blue belton", "silver-blue", "blue", "blue-gray", "blue and tan"]:
        blues = [rgb for rgb in pets[value] if rgb[2] > rgb[0]]  # its bluish colours
        assert blues and all(saturation(rgb) < 0.25 for rgb in blues), value
    image, mask = shaded_object()
    tinted = colors.tint(image, mask, pets["blue point"])
    assert saturation(render.to_uint8(tinted[mask].mean(axis=0))) < 0.12
    assert saturation(load_bank("pets").palette["electric blue"][0]) > 0.8  # the infeasible one is saturated


def test_multicolour_values_paint_each_of_their_colours():
    image, mask = shaded_object()
    entries = [(bank, value, rgb) for bank, value, rgb in bank_palettes() if len({tuple(c) for c in rgb}) > 1]
    assert len(entries) > 40
    for bank, value, rgb in entries:
        tinted = colors.tint(image, mask, rgb)[mask]
        distinct = np.unique(np.asarray(rgb, np.float32), axis=0) / 255
        nearest = np.abs(tinted[:, None, :] - distinct[None]).sum(axis=-1).argmin(axis=1)
        shares = np.bincount(nearest, minlength=len(distinct)) / len(tinted)
        assert shares.min() > 0.1, (bank, value, shares)
    black_and_tan = colors.tint(image, mask, load_bank("pets").palette["black and tan"])
    luma = render.luminance(image)
    dark, light = mask & (luma < np.median(luma[mask])), mask & (luma > np.median(luma[mask]))
    assert black_and_tan[dark].mean() < 0.15 < 0.4 < black_and_tan[light].mean()  # black shadows, tan lights
    white_share = colors.tint(image, mask, load_bank("pets").palette["blue belton"])[mask].mean(axis=1) > 0.6
    assert abs(white_share.mean() - 2 / 3) < 0.01  # a colour listed twice covers two shares


def test_tint_is_exact_and_the_same_on_any_cpu():
    image, mask = shaded_object()
    rgb = load_bank("pets").palette["tricolor"]
    first = colors.tint(image, mask, rgb, alpha=0.4)
    assert first.dtype == np.float32 and np.array_equal(first, colors.tint(image, mask, rgb, alpha=0.4))
    digest = hashlib.sha256(first.tobytes()).hexdigest()
    script = ("import hashlib, sys; sys.path[:0] = ['tests', 'tools'];"
              "from test_colors import shaded_object, load_bank;"
              "from varireal import colors; image, mask = shaded_object();"
              "print(hashlib.sha256(colors.tint(image, mask, load_bank('pets').palette['tricolor'], 0.4).tobytes())"
              ".hexdigest())")
    env = {k: v for k, v in os.environ.items() if k not in forced_kernels("oldest")} | forced_kernels("oldest")
    repo = Path(__file__).parents[1]
    oldest = subprocess.run([sys.executable, "-c", script], cwd=repo, env=env, capture_output=True, text=True)
    assert oldest.returncode == 0, oldest.stderr[-2000:]
    assert oldest.stdout.strip() == digest


def test_tint_with_no_colours_or_no_object():
    image, mask = shaded_object()
    with pytest.raises(ValueError, match="at least one colour"):
        colors.tint(image, mask, [])
    assert np.array_equal(colors.tint(image, np.zeros_like(mask), [[255, 0, 0]]), image)


@pytest.fixture
def painted(tmp_path):
    """A dataset whose bank forgets the colours of one value."""
    bank = {"unknown_classes": "error", "defaults": {"color": {"feasible": ["fawn", "black"], "infeasible": ["mauve"]}},
            "classes": {"Pug": {"color": {"feasible": ["fawn", "apricot"]}}},
            "palette": {"fawn": [[215, 180, 135]], "black": [[30, 28, 27]], "mauve": [[200, 150, 200]]}}
    path = tmp_path / "painted.yaml"
    path.write_text(yaml.safe_dump(bank))
    datasets.register(datasets.DatasetSpec("painted", "a dog", load=lambda root, download: None, bank=path))
    yield path
    datasets.unregister("painted")
    prompts.load_bank.cache_clear()


def test_a_bank_without_colours_for_a_value_names_it(painted):
    with pytest.raises(StageError) as error:
        load_bank("painted")
    message = str(error.value)
    assert "painted" in message and "'apricot'" in message and "class 'Pug'" in message and "palette" in message
    assert "\n" not in message


def test_prompts_file_round_trips_and_is_checked(tmp_path):
    path = tmp_path / "prompts.json"
    made = prompts.bank("pets", ["Siamese", "Beagle"], ("background", "color", "texture"), 2, seed=0)
    records.write_prompts(path, made)
    assert records.read_prompts(path) == made
    assert set(json.loads(path.read_text())) == {"values", "rgb"}
    assert all(len(made.rgb[name]) == 4 for name in ["Siamese", "Beagle"])  # 2 feasible + 2 infeasible colours

    path.write_text(json.dumps(made.values))  # the shape before colours
    with pytest.raises(StageError, match="run `varireal prompt` again"):
        records.read_prompts(path)
    bad = {"values": made.values, "rgb": {**made.rgb, "Beagle": {value: [[0, 0, 256]] for value in made.rgb["Beagle"]}}}
    path.write_text(json.dumps(bad))
    with pytest.raises(StageError, match="bad colours"):
        records.read_prompts(path)
    missing = {"values": made.values, "rgb": {"Siamese": made.rgb["Siamese"]}}
    path.write_text(json.dumps(missing))
    with pytest.raises(StageError, match="colour value Beagle"):
        records.read_prompts(path)


def answer(rgb) -> str:
    colour = [{"value": "fawn", "rgb": rgb}, {"value": "black", "rgb": [[30, 28, 27]]}]
    return json.dumps({"background": {"feasible": ["sofa", "lawn"], "infeasible": ["moon", "sea floor"]},
                       "color": {"feasible": colour, "infeasible": [{"value": "purple", "rgb": [[128, 50, 170]]},
                                                                    {"value": "neon green", "rgb": [[57, 255, 20]]}]},
                       "texture": {"feasible": ["fur", "silky fur"], "infeasible": ["scales", "bark"]}})


def test_chat_answers_carry_valid_colours():
    rules, palette = llm.parse_answer(answer([[215, 180, 135], [60, 40, 25]]), values_per_list=2)
    assert rules["color"] == {"feasible": ["fawn", "black"], "infeasible": ["purple", "neon green"]}
    assert palette["fawn"] == [[215, 180, 135], [60, 40, 25]] and palette["neon green"] == [[57, 255, 20]]
    for bad in [[], [[256, 0, 0]], [[-1, 0, 0]], [[1.5, 0, 0]], [["12", 0, 0]], [[True, 0, 0]], [[1, 2]],
                [[1, 2, 3, 4]], [1, 2, 3], "brown", None]:
        with pytest.raises(llm.AnswerError, match="color.feasible"):
            llm.parse_answer(answer(bad), values_per_list=2)
    plain = json.loads(answer([[1, 2, 3]]))
    plain["color"]["feasible"] = ["fawn", "black"]  # values without colours
    with pytest.raises(llm.AnswerError, match="color.feasible.0"):
        llm.parse_answer(json.dumps(plain), values_per_list=2)
    # The one-shot example shows the shape it asks for.
    assert llm.parse_answer(json.dumps(llm.EXAMPLE_ANSWER), values_per_list=4)[1]["silver tabby"] == [
        [45, 45, 48], [195, 197, 200]]
