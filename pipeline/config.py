"""The base of every typed config: strict pydantic models with one-line errors.

Each library module declares its own config next to the code that uses it (`UNetConfig` in
`model/unet.py`, `LoopConfig` in `training/loop.py`, ...), as a subclass of `Config`; that class
is the schema, the default and the documentation (`Field(description=...)`) of each knob, in one
place. The stages compose these into their `params.yaml` sections (`stages/params.py`) without
renaming anything. This module imports nothing from the rest of the package.

Validation is strict ("64" is not an int, an int is accepted for a float), unknown keys are
errors, and `validate` turns pydantic's report into one line naming the key, e.g.
`pretrain.loop.train_steps: Input should be greater than or equal to 1 (got 0)`.

`config_rows` walks a composed config's keys, defaults and descriptions; `render_params_yaml`
and `render_params_markdown` turn them into params.yaml and docs/params.md.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from pipeline.errors import ParamsError, shown


class Config(BaseModel):
    """Strict, frozen, no unknown keys. Subclasses may declare `renamed = {"old": "new.path"}` and
    `removed = {"old": "why"}`: an old key name is then an error that names its new place or says why."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)
    renamed: ClassVar[dict[str, str]] = {}
    removed: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for old, new in cls.renamed.items():
                if old in data:
                    raise ValueError(f"{old} was renamed: use {new}")
            for old, why in cls.removed.items():
                if old in data:
                    raise ValueError(f"{old} was removed ({why}): delete it")
        return data

    @field_validator("*", mode="before")
    @classmethod
    def _lists_as_tuples(cls, value: Any, info) -> Any:
        """YAML has no tuples: a list is accepted where the field is a tuple (items stay strict)."""
        field = cls.model_fields.get(info.field_name)
        if isinstance(value, list) and field is not None and getattr(field.annotation, "__origin__", None) is tuple:
            return tuple(value)
        return value

    def to_dict(self) -> dict:
        """Plain JSON-able dict (tuples as lists), e.g. for checkpoints and model-file headers."""
        return self.model_dump(mode="json")


def _model_at(cls: type[BaseModel], loc: tuple) -> type[BaseModel]:
    """The (nested) config class that owns the key at `loc` (for listing its allowed keys)."""
    for part in loc[:-1]:
        field = cls.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        cls = annotation
    return cls


def describe_error(error: dict, cls: type[BaseModel], where: str) -> str:
    """One pydantic error as one line: `<where>.<key>: <what> (got <value>)`."""
    # a key "\n" stays one line, a 1 MB key is cut short
    loc = tuple(str(p) if str(p).isprintable() and len(str(p)) <= 80 else shown(str(p)) for p in error["loc"])
    key = ".".join([where, *loc]) if where else ".".join(loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        owner = _model_at(cls, error["loc"])
        allowed = list(owner.model_fields)
        close = difflib.get_close_matches(loc[-1], allowed, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        return f"{key}: unknown key ({hint}allowed: {', '.join(allowed)})"
    message = error["msg"].removeprefix("Value error, ")
    if kind == "missing":
        return f"{key}: required key is missing"
    if kind == "value_error" or not loc:  # a check across keys (model validator) or a renamed key
        return f"{key or where}: {message}"
    return f"{key}: {message} (got {shown(error.get('input'))})"  # never the whole of a huge value


def validate(cls: type[Config], data: Any, where: str = "", context: dict | None = None):
    """`cls.model_validate(data)` with a one-line `ParamsError` naming the first bad key. `context`
    is pydantic's validation context (e.g. checks a config defers until a later value is known)."""
    if data is None:
        raise ParamsError(f"{where}: section is missing or empty (see params.yaml for every key)")
    if not isinstance(data, dict):
        raise ParamsError(f"{where}: must be a mapping of keys to values (got {type(data).__name__})")
    try:
        return cls.model_validate(data, context=context)
    except ValidationError as exc:
        raise ParamsError(describe_error(exc.errors()[0], cls, where)) from None


# ---- the params reference: params.yaml and docs/params.md rendered from the config classes ----

def config_rows(cls: type[BaseModel], prefix: str = "", skip: frozenset[str] = frozenset(),
                instance: BaseModel | None = None):
    """(dotted key, default, description, nested?) of every field of a config class, depth first;
    a nested config is one row (nested True, default None) followed by its own rows. Keys in
    `skip` (constructor arguments that are not params) are left out with everything under them."""
    instance = instance if instance is not None else cls()
    for name, field in cls.model_fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if key in skip:
            continue
        value = getattr(instance, name)
        if isinstance(value, BaseModel):
            yield key, None, field.description or "", True
            yield from config_rows(type(value), key, skip, value)
        else:
            yield key, value, field.description or "", False


def yaml_scalar(value: Any) -> str:
    """A value as params.yaml writes it: flow style, one line (`[32, 16]`, `null`, `2.0e-05`)."""
    import yaml

    value = list(value) if isinstance(value, tuple) else value
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...").strip()


def render_params_yaml(sections: dict[str, type[BaseModel]], header: str, shipped: dict[str, tuple[Any, str]],
                       skip: frozenset[str] = frozenset()) -> str:
    """params.yaml: `header`, then every section's keys with their defaults (`shipped` values where
    the file deliberately differs from the library) and each description as the comment."""
    out = [header.rstrip(), ""]
    for section, cls in sections.items():
        out.append(f"{section}:")
        for key, value, text, nested in config_rows(cls, section, skip):
            pad, name = "  " * key.count("."), key.rsplit(".", 1)[1]
            value = "" if nested else " " + yaml_scalar(shipped[key][0] if key in shipped else value)
            out.append(f"{pad}{name}:{value}" + (f"  # {text}" if text else ""))
        out.append("")
    return "\n".join(out)


def render_params_markdown(sections: dict[str, type[BaseModel]], intro: str, shipped: dict[str, tuple[Any, str]],
                           skip: frozenset[str] = frozenset()) -> str:
    """docs/params.md: `intro`, then one table per section (key, default, what it does); a shipped
    value that differs from the library's default says so, and why."""
    out = [intro.rstrip(), ""]
    for section, cls in sections.items():
        out += [f"## {section}", "", "| key | default | what it does |", "|---|---|---|"]
        for key, value, text, nested in config_rows(cls, section, skip):
            name, text = key.split(".", 1)[1], text.replace("|", "\\|")
            if nested:
                out.append(f"| **`{name}`** | | **{text}** |")
            elif key in shipped:
                value_now, why = shipped[key]
                out.append(f"| `{name}` | `{yaml_scalar(value_now)}` | {text}. Library default `{yaml_scalar(value)}`; "
                           f"shipped: {why} |")
            else:
                out.append(f"| `{name}` | `{yaml_scalar(value)}` | {text} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def fingerprint(*parts: dict) -> str:
    """Identity of settings (16 hex digits): a resume checkpoint with another fingerprint is not
    resumed, and the precision probes key their cached answers by the network's."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
