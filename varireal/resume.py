"""A work folder that outlives a killed run: finished files stay, the next run of the same plan goes on.

Layout of a work folder: `plan` (the plan's digest), `content/` (the output as it grows, each file
written whole under its final name) and, while publishing, `replaced/` (the previous output on its
way out); anything else in it (edit's `shards/`) is the caller's. The folder sits beside the output,
not inside it: DVC deletes a stage's outputs before it runs the stage again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from varireal import io


def digest(*parts: Any) -> str:
    """A stable hash of JSON-able parts (sorted keys), naming a plan."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def file_digest(path: str | Path) -> str:
    """The file's content hash, or "missing": a changed input makes a new plan."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return "missing"


def start(work: Path, plan: str, keep: Iterable[Path]) -> Path:
    """The content folder of work for this plan. A work folder of another plan (or none) starts
    empty; otherwise files not in keep (relative paths: temp files a kill left behind, images of items
    no longer planned) are removed, so what remains is whole and wanted."""
    plan_file = work / "plan"
    if not (plan_file.is_file() and plan_file.read_text() == plan):
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        io.write_text_atomic(plan_file, plan)  # last: a kill before it leaves a folder the next run wipes
    shutil.rmtree(work / "replaced", ignore_errors=True)
    content = content_of(work)
    content.mkdir(exist_ok=True)
    wanted = {Path(path) for path in keep}
    for path in [p for p in content.rglob("*") if p.is_file() or p.is_symlink()]:
        if path.relative_to(content) not in wanted:
            path.unlink()
    return content


def content_of(work: Path) -> Path:
    """Where start puts the growing output: for processes that share a work folder another one started."""
    return work / "content"


def publish(work: Path, target: Path) -> None:
    """Move the content folder to target (replacing an old target) and remove work. A run killed
    before the content's rename finds work complete and publishes it again; the old target is
    deleted first, so after the rename only the plan file is left to remove."""
    replaced = work / "replaced"
    if target.exists():
        os.replace(target, replaced)
    shutil.rmtree(replaced, ignore_errors=True)
    os.replace(content_of(work), target)
    shutil.rmtree(work)
