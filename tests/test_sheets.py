"""Contact sheets: the right images in the right cells, written by eval and logged to MLflow."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_stages import STAGES, mlflow_runs, run

from varireal import io, records, sheets
from varireal.datasets import world
from varireal.errors import StageError


def thumbnail(path) -> np.ndarray:
    """The image as the sheet should show it (every test image is square, so it fills its box)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").resize((sheets.THUMB, sheets.THUMB), Image.Resampling.LANCZOS),
                          dtype=float)


def cell(sheet: Image.Image, row: int, column: int) -> np.ndarray:
    return np.asarray(sheet.crop(sheets.thumbnail_box(row, column)), dtype=float)


def test_eval_writes_a_contact_sheet_of_the_run(project):
    # Every color edit is mixed in (2 shots x 2 per image x 2 feasibilities per class), no other attribute:
    # color cells come from the run, the others from the pool.
    project(mix={"attribute": "color", "infeasible_ratio": 0.5, "synthetic_per_class": 8})
    run(*STAGES)
    sheet = Image.open("metrics/contact_sheet.png")
    assert sheet.format == "PNG"
    columns = [("background", "feasible"), ("background", "infeasible"), ("color", "feasible"),
               ("color", "infeasible"), ("texture", "feasible"), ("texture", "infeasible")]
    assert sheets.columns(records.read_manifest("data/synthetic/manifest.csv")) == columns
    # 10 world classes, 8 rows; the source column and 3 attributes x 2 feasibilities.
    assert sheet.size == (8 + 7 * (128 + 8), 2 * 15 + 16 + 8 * (128 + 3 * 15 + 4 + 8)) == sheets.sheet_size(8, 7)

    rows = sheets.plan(records.read_mixed("data/mixed/train.csv"), records.read_manifest("data/synthetic/manifest.csv"))
    real = {r["path"]: r["class"] for r in io.read_csv("data/raw/train.csv")}
    mixed = {r["path"] for r in io.read_csv("data/mixed/train.csv")}
    manifest = {r["path"]: r for r in io.read_csv("data/synthetic/manifest.csv")}
    classes = [row.class_name for row in rows]
    assert len(set(classes)) == 8 and classes[0] == world.CLASS_NAMES[0] and classes[-1] == world.CLASS_NAMES[-1]
    pixels = sheet.convert("RGB")
    for r, row in enumerate(rows):
        assert real[row.source] == row.class_name and row.cells[0].path == row.source
        for (attribute, feasibility), edit in zip(columns, row.cells[1:]):
            entry = manifest[edit.path]
            assert (entry["source"], entry["attribute"], entry["feasibility"]) == (row.source, attribute, feasibility)
            assert edit.lines[2] == entry["value"]
            assert (edit.path in mixed) == (attribute == "color")  # the run's own edits wherever it has them
            assert edit.lines[0] == attribute + ("" if attribute == "color" else sheets.POOL_MARK)
        # Each thumbnail matches its own image, and matches it better than any other image of the row.
        images = [thumbnail(c.path) for c in row.cells]
        for c in range(len(row.cells)):
            errors = [np.abs(cell(pixels, r, c) - image).mean() for image in images]
            assert errors[c] < 1.0 and errors[c] == min(errors), (r, c, errors)

    (run_info,) = mlflow_runs()
    logged = Path(run_info.info.artifact_uri.removeprefix("file://"), "contact_sheet.png")
    assert logged.read_bytes() == Path("metrics/contact_sheet.png").read_bytes()


def square(path: Path, color) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 40), color).save(path)
    return str(path)


def test_sheet_picks_the_most_edited_source_and_leaves_missing_edits_empty(tmp_path):
    rng = np.random.default_rng(0)
    sources = {name: [square(tmp_path / f"{name}{i}.png", tuple(rng.integers(0, 255, 3))) for i in range(2)]
               for name in ("a", "b")}
    manifest = [records.ManifestRow(square(tmp_path / f"edit-{Path(s).stem}-{f}.png", tuple(rng.integers(0, 255, 3))),
                                    s, name, label, "texture", f, f"{f} value of {Path(s).stem}", 0, "composite")
                for label, name in enumerate(sources) for s in sources[name] for f in ("feasible", "infeasible")
                if (s, f) != (sources["b"][1], "infeasible")]
    # A real-less run that trained on the second source of each class: those are the rows.
    mixed = [records.MixedRow.synthetic(m) for m in manifest if m.source in (sources["a"][1], sources["b"][1])]
    rows = sheets.plan(mixed, manifest)
    assert [(row.class_name, row.source) for row in rows] == [("a", sources["a"][1]), ("b", sources["b"][1])]
    assert rows[1].cells[2] == sheets.Cell(None, ("texture", "infeasible", "none"), (190, 0, 0))
    sheet = sheets.render(rows, "title")
    assert sheet.size == sheets.sheet_size(2, 3)
    assert (cell(sheet, 1, 2)[1:-1, 1:-1] == 235).all()  # the empty cell's grey
    assert np.abs(cell(sheet, 1, 1) - thumbnail(rows[1].cells[1].path)).mean() < 1.0

    with pytest.raises(StageError, match="re-run mix"):
        sheets.plan(mixed + [dataclasses.replace(mixed[0], path="elsewhere.png")], manifest)


def test_sheet_spreads_many_classes_over_its_rows():
    real = [records.MixedRow(f"{c}.png", c, f"class {c}", "real") for c in range(20)]
    rows = sheets.plan(real, [])
    assert [row.class_name for row in rows] == [f"class {c}" for c in (0, 3, 5, 8, 11, 14, 16, 19)]
    assert all(len(row.cells) == 1 for row in rows)
