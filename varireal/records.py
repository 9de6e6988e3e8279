"""The files that pass between the data stages, one typed record per row, each file with one reader and
one writer here. They take paths: where the pipeline keeps its files is the pipeline's business.

    data/prompts.json              Prompts      read_prompts / write_prompts
    data/raw/train.csv, test.csv   SplitRow     read_split / write_split
    data/synthetic/manifest.csv    ManifestRow  read_manifest / write_manifest
    data/scores/scores.csv         ScoreRow     read_scores / write_scores
    data/mixed/train.csv           MixedRow     read_mixed / write_mixed

Typed in Python, the same bytes on disk as the plain dicts that came before: the CSV writer formats ints
and floats with str() and writes None as an empty cell, and a float written with str() reads back as the
same float, so a file read and written again is unchanged byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import ValidationError

from varireal import colors, io
from varireal.errors import StageError

# The scores of the score stage, its columns in scores.csv (params' mix.filter_score names one of them).
ScoreName = Literal["feasibility", "presence", "identity_kept", "identity_clip", "vqa"]


def _text_or_none(cell: str | None) -> str | None:
    """An empty cell, or a column the file does not have, is None."""
    return cell or None


def _float_or_none(cell: str | float | None) -> float | None:
    return None if cell in ("", None) else float(cell)


def _write(path: str | Path, rows: list[dict[str, Any]], fields: list[str]) -> None:
    """rows' cells under fields, in that order; a row's other keys are columns this file does not have."""
    io.write_csv(path, [{field: row[field] for field in fields} for row in rows], fields)


# data/prompts.json --------------------------------------------------------------------------------------

Values = dict[str, dict[str, dict[str, list[str]]]]  # class -> attribute -> feasibility -> values


@dataclass(frozen=True)
class Prompts:
    """The prompt stage's output: what the edit stage paints, and in which colours."""

    values: Values
    rgb: dict[str, colors.Palette]  # class -> each of its colour values -> its colours, [r, g, b] 0..255

    def missing_colours(self) -> list[str]:
        """'class value' of each colour value without colours."""
        return [f"{name} {value!r}" for name, lists in self.values.items() for attribute in colors.colour_attributes()
                if attribute in lists for values in lists[attribute].values() for value in values
                if value not in self.rgb.get(name, {})]


def write_prompts(path: str | Path, prompts: Prompts) -> None:
    io.write_json(path, {"values": prompts.values, "rgb": prompts.rgb})


def read_prompts(path: str | Path) -> Prompts:
    """The file, checked: every colour value has one or more valid colours."""
    data = io.read_json(path)
    if not isinstance(data, dict) or set(data) != {"values", "rgb"}:
        raise StageError(f"{path} is not a prompts file with 'values' and 'rgb' (an older version's?); "
                         "run `varireal prompt` again")
    try:
        rgb = {name: colors.PALETTE.validate_python(palette) for name, palette in data["rgb"].items()}
    except (ValidationError, AttributeError) as err:
        raise StageError(f"{path}: bad colours in 'rgb': {' '.join(str(err).split())[:300]}") from None
    prompts = Prompts(data["values"], rgb)
    if missing := prompts.missing_colours():
        raise StageError(f"{path}: colour value {missing[0]} has no colours in 'rgb'; run `varireal prompt` again")
    return prompts


# data/raw/train.csv and test.csv ------------------------------------------------------------------------

SPLIT_FIELDS = ["path", "mask", "label", "class"]
WORLD_ATTRIBUTE_FIELDS = ["background", "color", "texture"]
MASK_METHOD_FIELD = "mask_method"


@dataclass(frozen=True)
class SplitRow:
    """One image of a dataset split with its label and, where there is one, its object mask."""

    path: str
    mask: str | None  # None on a real dataset's test split: only the training shots get masks
    label: int
    class_name: str  # CSV column `class`
    # The embedded world's ground truth (what it rendered); a real photo's is unknown.
    background: str | None = None
    color: str | None = None
    texture: str | None = None
    mask_method: str | None = None  # a real dataset's training shots: trimap, grounded-sam, clipseg, rmbg, grabcut, box

    def as_row(self) -> dict[str, Any]:
        return {"path": self.path, "mask": self.mask, "label": self.label, "class": self.class_name,
                "background": self.background, "color": self.color, "texture": self.texture,
                MASK_METHOD_FIELD: self.mask_method}

    @classmethod
    def from_row(cls, row: dict[str, str]) -> SplitRow:
        return cls(path=row["path"], mask=_text_or_none(row["mask"]), label=int(row["label"]), class_name=row["class"],
                   background=_text_or_none(row.get("background")), color=_text_or_none(row.get("color")),
                   texture=_text_or_none(row.get("texture")), mask_method=_text_or_none(row.get(MASK_METHOD_FIELD)))


def split_fields(rows: list[SplitRow]) -> list[str]:
    """The columns of a split: the world's attributes where it knows them, the mask method where masks were made."""
    fields = list(SPLIT_FIELDS)
    if any(row.background is not None for row in rows):
        fields += WORLD_ATTRIBUTE_FIELDS
    if any(row.mask_method is not None for row in rows):
        fields.append(MASK_METHOD_FIELD)
    return fields


def write_split(path: str | Path, rows: list[SplitRow]) -> None:
    _write(path, [row.as_row() for row in rows], split_fields(rows))


def read_split(path: str | Path) -> list[SplitRow]:
    return [SplitRow.from_row(row) for row in io.read_csv(path)]


# data/synthetic/manifest.csv -----------------------------------------------------------------------------

MANIFEST_FIELDS = ["path", "source", "class", "label", "attribute", "feasibility", "value", "seed", "backend"]
# Only a pool made with edit.filter on has them: without, manifest.csv is what it was before the filter.
FILTER_FIELDS = ["filter_cycle", "filter_score"]


@dataclass(frozen=True)
class ManifestRow:
    """One synthetic image: which source image it edits, how, and with which backend."""

    path: str
    source: str  # the path of the real training image it edits
    class_name: str  # CSV column `class`
    label: int
    attribute: str
    feasibility: str
    value: str
    seed: int  # the plan's; with the filter, attempt n was edited with vqa_filter.attempt_seed(seed, n)
    backend: str
    # edit.filter on: the attempt kept (1 = the first) and its VQA score; None without the filter.
    filter_cycle: int | None = None
    filter_score: float | None = None

    def as_row(self) -> dict[str, Any]:
        """The CSV row, JSON-able (label and seed stay ints), in column order: shards and the plan digest use
        it too. The filter's columns only when it judged the row."""
        row = {"path": self.path, "source": self.source, "class": self.class_name, "label": self.label,
               "attribute": self.attribute, "feasibility": self.feasibility, "value": self.value,
               "seed": self.seed, "backend": self.backend}
        if self.filter_cycle is not None:
            row.update(filter_cycle=self.filter_cycle, filter_score=self.filter_score)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ManifestRow:
        """From a CSV row (all text) or an as_row dict read back from JSON."""
        return cls(path=row["path"], source=row["source"], class_name=row["class"], label=int(row["label"]),
                   attribute=row["attribute"], feasibility=row["feasibility"], value=row["value"],
                   seed=int(row["seed"]), backend=row["backend"],
                   filter_cycle=None if row.get("filter_cycle") in ("", None) else int(row["filter_cycle"]),
                   filter_score=_float_or_none(row.get("filter_score")))


def write_manifest(path: str | Path, rows: list[ManifestRow]) -> None:
    """The filter's columns when any row has them (every row does then: one pool, one edit run)."""
    filtered = any(row.filter_cycle is not None for row in rows)
    _write(path, [{**dict.fromkeys(FILTER_FIELDS), **row.as_row()} for row in rows],
           MANIFEST_FIELDS + FILTER_FIELDS if filtered else MANIFEST_FIELDS)


def read_manifest(path: str | Path) -> list[ManifestRow]:
    return [ManifestRow.from_row(row) for row in io.read_csv(path)]


# data/scores/scores.csv ----------------------------------------------------------------------------------

SCORE_NAMES: tuple[str, ...] = get_args(ScoreName)
SCORE_FIELDS = ["path", *SCORE_NAMES]


@dataclass(frozen=True)
class Scores:
    """An edit's scores (varireal/scoring.py says what each measures); None for one not computed (vqa
    without score.vqa_model). Fields in SCORE_NAMES order."""

    feasibility: float | None
    presence: float | None
    identity_kept: float | None
    identity_clip: float | None
    vqa: float | None

    def get(self, name: str) -> float | None:
        return getattr(self, name)

    def as_dict(self) -> dict[str, float | None]:
        return {name: self.get(name) for name in SCORE_NAMES}

    @classmethod
    def from_dict(cls, cells: dict[str, str | float | None]) -> Scores:
        return cls(**{name: _float_or_none(cells[name]) for name in SCORE_NAMES})


@dataclass(frozen=True)
class ScoreRow:
    path: str  # the edit's, as in the manifest
    scores: Scores


def write_scores(path: str | Path, rows: list[ScoreRow]) -> None:
    _write(path, [{"path": row.path, **row.scores.as_dict()} for row in rows], SCORE_FIELDS)


def read_scores(path: str | Path) -> list[ScoreRow]:
    return [ScoreRow(row["path"], Scores.from_dict(row)) for row in io.read_csv(path)]


# data/mixed/train.csv ------------------------------------------------------------------------------------

MIXED_FIELDS = ["path", "label", "class", "source", "attribute", "feasibility", "value"]
# "score_" keeps the feasibility score apart from the feasibility label.
MIXED_SCORE_FIELDS = [f"score_{name}" for name in SCORE_NAMES]

ImageKind = Literal["real", "synthetic"]


@dataclass(frozen=True)
class MixedRow:
    """One image of the training set: a real photo, or an edit with what it changed (and its scores when
    the mix filtered on one)."""

    path: str
    label: int
    class_name: str  # CSV column `class`
    kind: ImageKind  # CSV column `source`
    attribute: str | None = None  # None for a real photo
    feasibility: str | None = None
    value: str | None = None
    scores: Scores | None = None  # None for a real photo, and for every row of a mix without a score filter

    @classmethod
    def real(cls, row: SplitRow) -> MixedRow:
        return cls(row.path, row.label, row.class_name, "real")

    @classmethod
    def synthetic(cls, row: ManifestRow, scores: Scores | None = None) -> MixedRow:
        return cls(row.path, row.label, row.class_name, "synthetic", row.attribute, row.feasibility, row.value, scores)

    def as_row(self) -> dict[str, Any]:
        scores = self.scores.as_dict() if self.scores else dict.fromkeys(SCORE_NAMES)
        return {"path": self.path, "label": self.label, "class": self.class_name, "source": self.kind,
                "attribute": self.attribute, "feasibility": self.feasibility, "value": self.value,
                **{f"score_{name}": value for name, value in scores.items()}}

    @classmethod
    def from_row(cls, row: dict[str, str]) -> MixedRow:
        has_scores = row["source"] == "synthetic" and MIXED_SCORE_FIELDS[0] in row
        return cls(path=row["path"], label=int(row["label"]), class_name=row["class"], kind=row["source"],
                   attribute=_text_or_none(row["attribute"]), feasibility=_text_or_none(row["feasibility"]),
                   value=_text_or_none(row["value"]),
                   scores=Scores.from_dict({name: row[f"score_{name}"] for name in SCORE_NAMES}) if has_scores else None)


def write_mixed(path: str | Path, rows: list[MixedRow], with_scores: bool) -> None:
    """with_scores: the score_* columns, which a mix has only when it filtered on a score (without, train.csv
    is what it was before scores existed)."""
    _write(path, [row.as_row() for row in rows], MIXED_FIELDS + MIXED_SCORE_FIELDS if with_scores else MIXED_FIELDS)


def read_mixed(path: str | Path) -> list[MixedRow]:
    return [MixedRow.from_row(row) for row in io.read_csv(path)]
