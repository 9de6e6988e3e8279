"""The records of the files between the data stages: typed in Python, the same bytes on disk, and a file
read and written again unchanged."""

from pathlib import Path
from typing import get_args

import pytest

from varireal import records
from varireal.params import ScoreName

WORLD_SPLIT = ("path,mask,label,class,background,color,texture\n"
               "data/raw/images/train/trefoil/0003.png,data/raw/masks/train/trefoil/0003.png,0,trefoil,meadow,red,dots\n")
REAL_TRAIN = ("path,mask,label,class,mask_method\n"
              "data/raw/images/train/Abyssinian/a.jpg,data/raw/masks/train/Abyssinian/a.png,0,Abyssinian,trimap\n")
REAL_TEST = "path,mask,label,class\ndata/raw/images/test/Abyssinian/b.jpg,,11,Abyssinian\n"
MANIFEST = ("path,source,class,label,attribute,feasibility,value,seed,backend\n"
            "data/synthetic/images/color/feasible/trefoil/0003_0.png,data/raw/images/train/trefoil/0003.png,trefoil,0,"
            "color,feasible,red,3735928559,composite\n")
# A score of every form str(float) takes: digits after the point, a whole number, an exponent; vqa not computed.
SCORES = "path,feasibility,presence,identity_kept,identity_clip,vqa\ne.png,0.123457,1e-06,1.0,-0.5,\n"
MIXED = ("path,label,class,source,attribute,feasibility,value\n"
         "r.png,0,trefoil,real,,,\n"
         "e.png,0,trefoil,synthetic,color,feasible,red\n")
MIXED_SCORED = ("path,label,class,source,attribute,feasibility,value,score_feasibility,score_presence,"
                "score_identity_kept,score_identity_clip,score_vqa\n"
                "r.png,0,trefoil,real,,,,,,,,\n"
                "e.png,0,trefoil,synthetic,color,feasible,red,0.123457,1e-06,1.0,-0.5,\n")


@pytest.mark.parametrize("text, read, write", [
    (WORLD_SPLIT, records.read_split, records.write_split),
    (REAL_TRAIN, records.read_split, records.write_split),
    (REAL_TEST, records.read_split, records.write_split),
    (MANIFEST, records.read_manifest, records.write_manifest),
    (SCORES, records.read_scores, records.write_scores),
    (MIXED, records.read_mixed, lambda path, rows: records.write_mixed(path, rows, with_scores=False)),
    (MIXED_SCORED, records.read_mixed, lambda path, rows: records.write_mixed(path, rows, with_scores=True)),
])
def test_a_file_read_and_written_again_is_unchanged(tmp_path, text, read, write):
    (tmp_path / "in.csv").write_text(text)
    write(tmp_path / "out.csv", read(tmp_path / "in.csv"))
    assert (tmp_path / "out.csv").read_bytes() == text.encode()


def test_fields_are_typed_and_empty_cells_are_none(tmp_path):
    Path(tmp_path / "test.csv").write_text(REAL_TEST)
    (test,) = records.read_split(tmp_path / "test.csv")
    assert test.label == 11 and test.mask is None and test.mask_method is None and test.background is None
    Path(tmp_path / "manifest.csv").write_text(MANIFEST)
    (edit,) = records.read_manifest(tmp_path / "manifest.csv")
    assert (edit.label, edit.seed, edit.class_name) == (0, 3735928559, "trefoil")
    Path(tmp_path / "mixed.csv").write_text(MIXED_SCORED)
    real, synthetic = records.read_mixed(tmp_path / "mixed.csv")
    assert (real.kind, real.attribute, real.scores) == ("real", None, None)
    assert synthetic.kind == "synthetic" and synthetic.scores == records.Scores(0.123457, 1e-06, 1.0, -0.5, None)


def test_a_mixed_edit_carries_its_manifest_row_and_scores():
    edit = records.ManifestRow("e.png", "s.png", "trefoil", 4, "texture", "infeasible", "stripes", 9, "composite")
    scores = records.Scores(0.5, 0.25, 1.0, 0.9, None)
    row = records.MixedRow.synthetic(edit, scores)
    assert (row.path, row.label, row.class_name, row.kind, row.attribute, row.feasibility, row.value, row.scores) == \
        ("e.png", 4, "trefoil", "synthetic", "texture", "infeasible", "stripes", scores)


def test_the_scores_are_the_score_names_of_the_params():
    assert records.SCORE_NAMES == get_args(ScoreName)
    assert tuple(records.Scores.__dataclass_fields__) == records.SCORE_NAMES
