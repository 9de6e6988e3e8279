"""Small file helpers: every output is written whole or not at all."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a fresh sibling folder; on success it replaces target, on failure it is removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield staging
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def write_json(path: str | Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def write_csv(path: str | Path, rows: list[dict[str, Any]], fieldnames: list[str] | None = None) -> None:
    """Write rows (dicts) as CSV with LF line ends, so files are byte-identical everywhere."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fieldnames or (list(rows[0]) if rows else []), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())


def read_csv(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def slug(name: str) -> str:
    """A file-name-safe form of a class name or value ("F/A-18" -> "F_A-18"), used wherever one becomes a path."""
    import re

    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return safe or "_"


def write_image_atomic(path: str | Path, pixels) -> None:
    """Save a uint8 array as an image (format from the suffix), whole or not at all."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=Image.registered_extensions()[Path(path).suffix.lower()])
    write_bytes_atomic(path, buffer.getvalue())


def open_rgb(path: str | Path):
    """A PIL image in 8-bit RGB, decoded now (fetch guarantees every image under data/ converts cleanly)."""
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")


def read_mask(path: str | Path):
    """A mask file (0/255 PNG) as a boolean array: True on the object."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as mask:
        return np.asarray(mask.convert("L")) > 127
