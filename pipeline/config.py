"""The base of every typed config: strict pydantic models with one-line errors.

Each library module declares its own config next to the code that uses it (`UNetConfig` in
`model/unet.py`, `LoopConfig` in `training/loop.py`, ...), as a subclass of `Config`; that class
is the schema, the default and the documentation (`Field(description=...)`) of each knob, in one
place. The stages compose these into their `params.yaml` sections (`stages/params.py`) without
renaming anything. This module imports nothing from the rest of the package.

Validation is strict ("64" is not an int, an int is accepted for a float), unknown keys are
errors, and `validate` turns pydantic's report into one line naming the key, e.g.
`pretrain.loop.train_steps: Input should be greater than or equal to 1 (got 0)`.
"""

from __future__ import annotations

import difflib
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from pipeline.errors import ParamsError


class Config(BaseModel):
    """Strict, frozen, no unknown keys. Subclasses may declare `renamed = {"old": "new.path"}`:
    an old key name is then an error that names its new place."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)
    renamed: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for old, new in cls.renamed.items():
                if old in data:
                    raise ValueError(f"{old} was renamed: use {new}")
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
    loc = tuple(str(p) if str(p).isprintable() else repr(str(p)) for p in error["loc"])  # a key "\n" stays one line
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
    return f"{key}: {message} (got {error.get('input')!r})"


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
