"""Write docs/params.md and print params.yaml, both rendered from the params schema (stages/params.py).

    python scripts/figures/params_table.py           # write docs/params.md
    python scripts/figures/params_table.py --check   # exit 1 if docs/params.md or params.yaml is stale
    python scripts/figures/params_table.py --yaml    # print params.yaml (> params.yaml to regenerate it)

The config classes are the one declaration of every knob; tests/test_params.py fails when either
file no longer matches them.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from stages.params import params_markdown, params_yaml  # noqa: E402

DOCS, PARAMS = ROOT / "docs" / "params.md", ROOT / "params.yaml"


def main(argv: list[str]) -> int:
    if "--yaml" in argv:
        print(params_yaml(), end="")
        return 0
    if "--check" in argv:
        stale = [str(path.relative_to(ROOT)) for path, text in ((DOCS, params_markdown()), (PARAMS, params_yaml()))
                 if not path.is_file() or path.read_text() != text]
        print(f"stale: {', '.join(stale)}" if stale else "docs/params.md and params.yaml are up to date")
        return 1 if stale else 0
    DOCS.write_text(params_markdown())
    print(f"wrote {DOCS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
