"""The edit plan: every synthetic image to make, each fixed by its own seed, and one process's share of it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from varireal import io
from varireal.params import ATTRIBUTES
from varireal.prompts import FEASIBILITIES
from varireal.records import ManifestRow, SplitRow


@dataclass(frozen=True)
class EditItem:
    """One synthetic image to make. Its seed alone fixes its pixels, whatever order items run in."""

    path: str
    source: str
    mask: str
    label: int
    class_name: str
    attribute: str
    feasibility: str
    value: str
    seed: int

    def manifest_row(self, backend: str) -> ManifestRow:
        return ManifestRow(path=self.path, source=self.source, class_name=self.class_name, label=self.label,
                           attribute=self.attribute, feasibility=self.feasibility, value=self.value, seed=self.seed,
                           backend=backend)


def plan(
    sources: list[SplitRow], prompts: dict, attributes: list[str], per_image: int, seed: int, out_prefix: Path
) -> list[EditItem]:
    """Every source image x attribute x feasibility x per_image, values sampled without replacement
    (a list shorter than per_image is cycled through again in a new order)."""
    items = []
    for s, source in enumerate(sources):
        stem = Path(source.path).stem
        for attribute in attributes:
            a = ATTRIBUTES.index(attribute)
            for f, feasibility in enumerate(FEASIBILITIES):
                values = prompts[source.class_name][attribute][feasibility]
                rng = np.random.default_rng([seed, s, a, f])
                order = np.concatenate([rng.permutation(len(values)) for _ in range(-(-per_image // len(values)))])
                for k in range(per_image):
                    item_seed = int(np.random.SeedSequence([seed, s, a, f, k]).generate_state(1)[0])
                    name = f"{stem}_{k}.png"
                    items.append(EditItem(
                        path=(out_prefix / "images" / attribute / feasibility / io.slug(source.class_name) / name).as_posix(),
                        source=source.path,
                        mask=source.mask,
                        label=source.label,
                        class_name=source.class_name,
                        attribute=attribute,
                        feasibility=feasibility,
                        value=values[order[k]],
                        seed=item_seed,
                    ))
    return items


def share(items: list[EditItem], process: int, processes: int) -> list[EditItem]:
    """The items process (0-based) of processes edits: source images dealt round-robin in plan order.
    All items of a source go to one process, which decodes the source once; every source has the same
    number of items, so shares differ by one source at most. The split depends only on the plan and
    the number of processes, never on what an earlier run finished, so a run resumed with another
    number of processes still edits every missing item exactly once."""
    sources = list(dict.fromkeys(item.source for item in items))
    mine = set(sources[process::processes])
    return [item for item in items if item.source in mine]
