"""Loading transformers models and processors under the project's rules for code that comes with them.

A model folder or hub repository can ask to run Python files of its own (`auto_map` in its config).
That code runs only where a param turns `trust_remote_code` on; it is passed explicitly (False by
default), so transformers neither runs it nor stops an interactive run to ask.
"""

from __future__ import annotations

from varireal.errors import StageError, first_line


def from_pretrained(loader, model: str, key: str, trust_remote_code: bool, hint: str | None = None, **kwargs):
    """loader.from_pretrained(model, ...); a refused request for remote code is one line naming the param.
    With hint (what the user can do instead), a model that cannot be loaded (not on the hub, not downloaded
    for an offline run, the wrong kind of model) is one line too: "cannot load <key>=<model> (why); <hint>"."""
    try:
        return loader.from_pretrained(model, trust_remote_code=trust_remote_code, **kwargs)
    except ValueError as err:
        if not trust_remote_code and "trust_remote_code" in str(err):
            trust_key = key.rsplit(".", 1)[0] + ".trust_remote_code"
            raise StageError(f"{key}={model!r} asks to run Python code that comes with it (auto_map in its config); "
                             f"it was not run. Set {trust_key}: true only if you trust that code") from None
        if hint is None:
            raise
        raise StageError(f"cannot load {key}={model!r} ({first_line(err)}); {hint}") from None
    except (OSError, KeyError) as err:
        if hint is None:
            raise
        raise StageError(f"cannot load {key}={model!r} ({first_line(err)}); {hint}") from None
