"""Render the params schema (stages/params.py) as the README's params table or as a default params.yaml.

    python scripts/params_table.py            # print the markdown table
    python scripts/params_table.py --readme   # rewrite the table between the README's markers
    python scripts/params_table.py --yaml     # print params.yaml with every default and its description

The schema is the one declaration of every knob; tests/test_params.py checks that the README
table and params.yaml agree with it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stages.params import SECTIONS, SHIPPED  # noqa: E402

START, END = "<!-- params-table:start -->", "<!-- params-table:end -->"
SKIP = {("pretrain", "unet"): {"image_size", "in_channels", "out_channels", "vocabulary"}}  # not params (see PretrainParams)


def _nested(annotation) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def rows(cls: type[BaseModel], prefix: str, instance: BaseModel | None = None):
    """(dotted key, default, description, nested?) for every field, depth first."""
    instance = instance if instance is not None else cls()
    parts = tuple(prefix.split("."))
    skip = SKIP.get(parts, set())
    for name, field in cls.model_fields.items():
        if name in skip:
            continue
        value = getattr(instance, name)
        sub = _nested(field.annotation)
        key = f"{prefix}.{name}"
        if sub is not None:
            yield key, None, field.description or "", True
            yield from rows(sub, key, value)
        elif key in SHIPPED:
            shipped, why = SHIPPED[key]
            yield key, shipped, f"{field.description or ''} (library default {_scalar(value)}: {why})", False
        else:
            yield key, value, field.description or "", False


def _scalar(value) -> str:
    value = list(value) if isinstance(value, tuple) else value
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...").strip()


def table() -> str:
    lines = ["| key | default | what it does |", "|---|---|---|"]
    for section, cls in SECTIONS.items():
        for key, value, text, nested in rows(cls, section):
            if nested:
                continue
            lines.append(f"| `{key}` | `{_scalar(value)}` | {text.replace('|', '/')} |")
    return "\n".join(lines)


def default_yaml() -> str:
    out = []
    for section, cls in SECTIONS.items():
        out.append(f"{section}:")
        for key, value, text, nested in rows(cls, section):
            depth = key.count(".")
            name = key.rsplit(".", 1)[1]
            pad = "  " * depth
            if nested:
                out.append(f"{pad}{name}:" + (f"  # {text}" if text else ""))
            else:
                out.append(f"{pad}{name}: {_scalar(value)}" + (f"  # {text}" if text else ""))
        out.append("")
    return "\n".join(out)


def update_readme(path: Path = ROOT / "README.md") -> bool:
    """Rewrite the table between the markers; returns whether the file changed."""
    text = path.read_text()
    start, end = text.index(START) + len(START), text.index(END)
    new = text[:start] + "\n" + table() + "\n" + text[end:]
    if new != text:
        path.write_text(new)
    return new != text


if __name__ == "__main__":
    if "--readme" in sys.argv:
        print("README.md updated" if update_readme() else "README.md already up to date")
    elif "--yaml" in sys.argv:
        print(default_yaml(), end="")
    else:
        print(table())
