"""Loading transformers models and processors under the project's rules for code that comes with them.

A model folder or hub repository can ask to run Python files of its own (`auto_map` in its config).
That code runs only where a param turns `trust_remote_code` on; it is passed explicitly (False by
default), so transformers neither runs it nor stops an interactive run to ask.
"""

from __future__ import annotations

from varireal.errors import StageError


def from_pretrained(loader, model: str, key: str, trust_remote_code: bool, **kwargs):
    """loader.from_pretrained(model, ...); a refused request for remote code is one line naming the param."""
    try:
        return loader.from_pretrained(model, trust_remote_code=trust_remote_code, **kwargs)
    except ValueError as err:
        if trust_remote_code or "trust_remote_code" not in str(err):
            raise
        trust_key = key.rsplit(".", 1)[0] + ".trust_remote_code"
        raise StageError(f"{key}={model!r} asks to run Python code that comes with it (auto_map in its config); "
                         f"it was not run. Set {trust_key}: true only if you trust that code") from None
