"""Run the suite's notebooks through papermill with a profile's parameters.

    python -m ttc_utils.run --profile default              # every notebook, in order
    python -m ttc_utils.run --profile smoke 00_world       # one notebook
    python -m ttc_utils.run --profile default -p seed=1    # override a parameter

Parameters come from `notebooks/params/<profile>.yaml` (its `common` section plus the notebook's own);
every name is checked against the notebook's `parameters` cell first, since papermill only warns about
unknown names. Executed copies (with outputs) go to `notebooks/executed/<profile>/`, which git ignores.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import papermill as pm
import yaml

from .config import PROFILES, load_profile

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"


def notebook_names() -> list[str]:
    return sorted(p.stem for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


def run_notebook(name: str, profile: str, overrides: dict | None = None, out_dir: Path | None = None,
                 progress: bool = True) -> Path:
    """Execute one notebook with `profile`'s parameters (plus `overrides`); returns the executed copy."""
    if name not in notebook_names():
        raise ValueError(f"notebook={name!r} is not allowed: expected one of {notebook_names()}")
    src = NOTEBOOKS_DIR / f"{name}.ipynb"
    params = {**load_profile(profile, name), **(overrides or {})}
    declared = pm.inspect_notebook(str(src))
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise ValueError(f"parameters {unknown} are not allowed for {name}: its parameters cell declares "
                         f"{sorted(declared)}")
    out_dir = Path(out_dir or NOTEBOOKS_DIR / "executed" / profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{name}.ipynb"
    t0 = time.perf_counter()
    pm.execute_notebook(str(src), str(out), parameters=params, kernel_name="python3", cwd=str(NOTEBOOKS_DIR),
                        progress_bar=progress)
    print(f"{name} ({profile}): {time.perf_counter() - t0:.0f} s -> {out}", flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="*", help="notebook names (default: all, in order)")
    ap.add_argument("--profile", default="default", help=f"one of {PROFILES}")
    ap.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                    help="override a parameter (VALUE is parsed as YAML)")
    args = ap.parse_args(argv)
    overrides = {}
    for item in args.param:
        if "=" not in item:
            ap.error(f"--param {item!r} is not allowed: expected NAME=VALUE")
        k, v = item.split("=", 1)
        overrides[k] = yaml.safe_load(v)
    for name in args.notebooks or notebook_names():
        run_notebook(name, args.profile, overrides)


if __name__ == "__main__":
    main()
