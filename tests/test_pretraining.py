"""The world-CLIP: its captioned corpus, its contrastive pretraining and the pretrain stage."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from varireal import classifier, io, pretraining
from varireal import corpus as world_corpus
from varireal.datasets import world


def corpus(size=600, species_share=0.3, infeasible_share=0.1, workers=1, seed=0, image_size=24, attribute_share=0.5):
    return world_corpus.render_corpus(
        world_corpus.CorpusSpec(size, image_size, species_share, attribute_share, infeasible_share, seed), workers)


def words(caption: str) -> set[str]:
    return set(re.findall(r"[a-z]+", caption))


def test_captions_name_the_attributes_and_the_species_only_in_its_share():
    made = corpus(size=1000)
    named = [name in words(text) for text, name in zip(made.captions, made.species)]
    assert 0.25 < np.mean(named) < 0.35  # species_share 0.3
    colours = [bool(words(text) & set(world.VOCABULARY["color"])) for text in made.captions]
    assert 0.45 < np.mean(colours) < 0.55  # attribute_share 0.5
    for text, name, is_named in zip(made.captions, made.species, named):
        assert text.startswith("a photo of a ")  # the world's template, "a photo of a {}."
        if not is_named:  # then no species at all, only its family
            assert not words(text) & set(world.ALL_NAMES)
            pointed = dict((n, p) for n, _, p in world.ALL_SPECIES)[name]
            assert world_corpus.FAMILY[pointed] in words(text)
    assert set(made.species) == set(world.ALL_NAMES)  # the extra species too
    assert not set(world.CLASS_NAMES) & {n for n, _, _ in world.EXTRA_SPECIES}


def test_captions_name_what_the_picture_shows():
    instance = world.Instance("hexastar", "moon", "red", "stripes")
    text = world_corpus.caption(instance, named=True)
    assert text == "a photo of a red striped hexastar on the moon."
    assert world_corpus.caption(instance, named=False) == "a photo of a red striped star on the moon."
    assert world_corpus.caption(instance, named=True, attributes=()) == "a photo of a hexastar."  # the template
    assert world_corpus.caption(instance, named=True, attributes=("texture",)) == "a photo of a striped hexastar."
    # Every caption keeps its species inside the small CLIP's 16-token context (SOT and EOT included).
    import open_clip

    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    longest = max((world_corpus.caption(world.Instance(name, background, color, texture), True)
                   for name in world.ALL_NAMES for background in world_corpus.BACKGROUND_WORDS
                   for color in world.VOCABULARY["color"] for texture in world_corpus.TEXTURE_WORDS), key=len)
    kept = tokenizer.decode(tokenizer(longest)[0].tolist())
    species = next(name for name in world.ALL_NAMES if name in longest)
    assert species in kept


def test_infeasible_share_draws_attributes_outside_the_species_rules():
    def infeasible(made):
        return np.mean([not all(world.is_feasible(name, attribute, value) for attribute, value in zip(
            world.ATTRIBUTES, parse(text))) for text, name in zip(made.captions, made.species)])

    def parse(text):  # (background, color, texture) back from a caption
        background = next(b for b, phrase in world_corpus.BACKGROUND_WORDS.items() if text.endswith(phrase + "."))
        color, texture_word = text.removeprefix("a photo of a ").split()[:2]
        texture = next(t for t, w in world_corpus.TEXTURE_WORDS.items() if w == texture_word)
        return background, color, texture

    assert infeasible(corpus(size=300, infeasible_share=0.0, attribute_share=1.0)) == 0
    # Drawn from every value, a picture is infeasible in at least one attribute most of the time.
    assert 0.8 < infeasible(corpus(size=300, infeasible_share=1.0, attribute_share=1.0)) <= 1.0


def test_corpus_is_the_same_for_any_number_of_workers():
    one, two = corpus(size=520, workers=1), corpus(size=520, workers=2)
    assert np.array_equal(one.images, two.images) and one.captions == two.captions
    assert not np.array_equal(corpus(size=520, seed=1).images, one.images)


def test_pretraining_pulls_pictures_and_their_captions_together(tiny_clip_config):
    torch.set_num_threads(1)
    made = corpus(size=512, species_share=1.0, image_size=32)
    clip, _, _, tokenizer = classifier.create_clip(str(tiny_clip_config), None, seed=0)
    mean, std = clip.visual.image_mean, clip.visual.image_std
    tokens = tokenizer(made.captions)
    before = pretraining.retrieval_top1(clip, made.images, tokens, mean, std, batch_size=64)
    frozen = clip.token_embedding.weight.detach().clone()
    history = pretraining.pretrain(clip, made.images, tokens, steps=60, batch_size=64, lr=3e-3, weight_decay=0.1,
                                   warmup=6, seed=0, mean=mean, std=std)
    after = pretraining.retrieval_top1(clip, made.images, tokens, mean, std, batch_size=64)
    assert np.mean([h["loss"] for h in history[-10:]]) < np.mean([h["loss"] for h in history[:10]]) - 0.3
    assert after > before + 0.05  # chance is 1/64
    assert torch.equal(clip.token_embedding.weight, frozen)  # frozen, as the recipe


def test_pretrain_stage_writes_a_checkpoint_open_clip_loads(project, tiny_clip_config):
    from varireal_pipeline.cli import app

    project()
    result = CliRunner().invoke(app, ["pretrain"])
    assert result.exit_code == 0, result.output
    summary = io.read_json("metrics/pretrain.json")
    assert summary["steps"] == 2 and summary["corpus_size"] == 256 and 0 <= summary["zero_shot_top1_heldout"] <= 1
    assert [int(row["step"]) for row in io.read_csv("metrics/pretrain_loss.csv")] == [1, 2]
    # Loaded the way train and score load it (open_clip's pretrained=<file>): every weight as saved.
    from safetensors.torch import load_file

    saved = load_file("models/world-clip/model.safetensors")
    loaded, *_ = classifier.create_clip(str(tiny_clip_config), "models/world-clip/model.safetensors", seed=99)
    assert all(torch.equal(loaded.state_dict()[key], value) for key, value in saved.items())
    assert set(saved) == set(loaded.state_dict())


def test_pretrain_skips_a_real_dataset_and_train_refuses_world_weights_there(project):
    from varireal_pipeline.cli import app

    project(dataset={"name": "pets"}, train={"pretrained": "openai"}, score={"pretrained": "openai"})
    result = CliRunner().invoke(app, ["pretrain"])
    assert result.exit_code == 0, result.output
    assert "nothing to pretrain" in result.output
    assert io.read_json("models/world-clip/skipped.json")["dataset"] == "pets"
    assert not (project().parent / "models/world-clip/model.safetensors").exists()

    # A real dataset left at pretrained: world gets one line that says what to set.
    project(dataset={"name": "pets"})
    result = CliRunner().invoke(app, ["score"])  # before it reads anything else
    (line,) = result.output.strip().splitlines()
    assert result.exit_code == 1 and "pets" in line and "score.pretrained" in line and "openai" in line

    from varireal_pipeline.stages import clip_weights
    from varireal.errors import StageError

    Path("models/world-clip/skipped.json").unlink()
    with pytest.raises(StageError, match="varireal pretrain"):
        clip_weights("world")


def test_world_weights_need_the_pretrained_architecture(project):
    from varireal_pipeline.cli import app

    project(train={"model": "ViT-B-32"})
    result = CliRunner().invoke(app, ["train"])
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert "train.pretrained world" in line and "ViT-B-32" in line
