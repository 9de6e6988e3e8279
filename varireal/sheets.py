"""Contact sheets: a run's source images beside one feasible and one infeasible edit per attribute.

One row per class (up to MAX_CLASSES, spread evenly over the classes), showing the source image of
that class the run trained on most edits of. Each edit cell prefers an edit that is in the run's
training set (data/mixed/train.csv); where the run has none (another attribute, the other
feasibility, a real-only run) it falls back to the synthetic pool and marks the cell with "*", so
every sheet shows every attribute x feasibility. A cell stays empty only when the pool has no such edit.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from varireal import io
from varireal.errors import StageError
from varireal.params import ATTRIBUTES
from varireal.prompts import FEASIBILITIES
from varireal.records import ManifestRow, MixedRow

MAX_CLASSES = 8
THUMB = 128  # thumbnail side in pixels
GAP = 8  # between cells
FONT_SIZE = 12
LINE = 15  # caption line height
CAPTION = 3 * LINE + 4  # three lines under each thumbnail
HEADER = 2 * LINE + 2 * GAP  # title and legend
FEASIBILITY_COLORS = {"feasible": (0, 110, 0), "infeasible": (190, 0, 0)}
POOL_MARK = " *"
LEGEND = "* from the synthetic pool, not in this run's training set"


@dataclass(frozen=True)
class Cell:
    """One thumbnail and its three caption lines; path None draws an empty cell."""

    path: str | None
    lines: tuple[str, str, str]
    color: tuple[int, int, int] = (0, 0, 0)  # of the second line


@dataclass(frozen=True)
class SheetRow:
    class_name: str
    source: str
    cells: list[Cell]  # the source first, then one per column of `columns`


def columns(manifest: list[ManifestRow]) -> list[tuple[str, str]]:
    """(attribute, feasibility) for every attribute in the pool, in ATTRIBUTES order."""
    pooled = {row.attribute for row in manifest}
    return [(attribute, feasibility) for attribute in ATTRIBUTES if attribute in pooled
            for feasibility in FEASIBILITIES]


def _spread(items: list, count: int) -> list:
    """count items evenly spaced over the list, first and last included."""
    if len(items) <= count:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, count).round().astype(int)]


def plan(mixed: list[MixedRow], manifest: list[ManifestRow], max_classes: int = MAX_CLASSES) -> list[SheetRow]:
    """The rows of the sheet: which source per class and which edit in every cell."""
    by_path = {row.path: row for row in manifest}
    trained_edits = {row.path for row in mixed if row.kind == "synthetic"}
    # The run's training set names its real images directly and its edits through their source.
    sources: dict[str, tuple[int, str]] = {}  # source path -> (label, class)
    edits_per_source: Counter = Counter()
    for row in mixed:
        if row.kind == "real":
            sources.setdefault(row.path, (row.label, row.class_name))
        else:
            if row.path not in by_path:
                raise StageError(f"contact sheet: {row.path} of the mixed set is not in the synthetic pool's "
                                 f"manifest; re-run mix (dvc repro) so both come from the same pool")
            source = by_path[row.path].source
            sources.setdefault(source, (row.label, row.class_name))
            edits_per_source[source] += 1
    classes = sorted(set(sources.values()))
    rows = []
    for label, class_name in _spread(classes, max_classes):
        candidates = sorted(path for path, key in sources.items() if key == (label, class_name))
        source = max(candidates, key=lambda path: edits_per_source[path])  # first of the most edited
        cells = [Cell(source, (class_name, "source", Path(source).name))]
        for attribute, feasibility in columns(manifest):
            options = [row for row in manifest if row.source == source and row.attribute == attribute
                       and row.feasibility == feasibility]
            trained = [row for row in options if row.path in trained_edits]
            if trained or options:
                edit = (trained or options)[0]
                mark = "" if trained else POOL_MARK
                cells.append(Cell(edit.path, (attribute + mark, feasibility, edit.value),
                                  FEASIBILITY_COLORS[feasibility]))
            else:
                cells.append(Cell(None, (attribute, feasibility, "none"), FEASIBILITY_COLORS[feasibility]))
        rows.append(SheetRow(class_name, source, cells))
    return rows


def sheet_size(n_rows: int, n_columns: int) -> tuple[int, int]:
    """Width and height in pixels of a sheet with n_columns cells (source included) per row."""
    return GAP + n_columns * (THUMB + GAP), HEADER + n_rows * (THUMB + CAPTION + GAP)


def thumbnail_box(row: int, column: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the THUMB x THUMB square of a cell; images are centred in it."""
    left = GAP + column * (THUMB + GAP)
    top = HEADER + row * (THUMB + CAPTION + GAP)
    return left, top, left + THUMB, top + THUMB


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """text, cut with an ellipsis where it would run past width pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def render(rows: list[SheetRow], title: str = "") -> Image.Image:
    n_columns = max((len(row.cells) for row in rows), default=1)
    sheet = Image.new("RGB", sheet_size(len(rows), n_columns), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(FONT_SIZE)
    width = sheet.width - 2 * GAP
    draw.text((GAP, GAP), _fit(draw, title, font, width), fill="black", font=font)
    draw.text((GAP, GAP + LINE), _fit(draw, LEGEND, font, width), fill=(90, 90, 90), font=font)
    for r, row in enumerate(rows):
        for c, cell in enumerate(row.cells):
            left, top, right, bottom = thumbnail_box(r, c)
            if cell.path is None:
                draw.rectangle((left, top, right - 1, bottom - 1), fill=(235, 235, 235), outline=(200, 200, 200))
            else:
                with Image.open(cell.path) as image:
                    thumb = ImageOps.contain(image.convert("RGB"), (THUMB, THUMB), Image.Resampling.LANCZOS)
                sheet.paste(thumb, (left + (THUMB - thumb.width) // 2, top + (THUMB - thumb.height) // 2))
            for line, (text, fill) in enumerate(zip(cell.lines, ("black", cell.color, (60, 60, 60)))):
                draw.text((left, bottom + 2 + line * LINE), _fit(draw, text, font, THUMB), fill=fill, font=font)
    return sheet


def contact_sheet(mixed: list[MixedRow], manifest: list[ManifestRow], title: str = "",
                  max_classes: int = MAX_CLASSES) -> Image.Image:
    """The sheet of a run: mixed is its data/mixed/train.csv, manifest the pool's data/synthetic/manifest.csv."""
    return render(plan(mixed, manifest, max_classes), title)


def write_png(image: Image.Image, path: str | Path) -> None:
    """Save whole or not at all, like every other output."""
    png = BytesIO()
    image.save(png, format="PNG")
    io.write_bytes_atomic(path, png.getvalue())
