"""Compare the figures' plotted numbers (figures/*.json) with those of a git revision: did a change move a result?

    python -m ttc_utils.figure_diff            # the working tree's figures/*.json against HEAD's
    python -m ttc_utils.figure_diff v1 --dir figures

Wall-clock fields (`seconds`, `wall_s`, `tokens_per_s`) are left out: they time the machine, not the method.
Exits 1 and lists the first differing values of each file when any number differs.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

TIMING_FIELDS = {"seconds", "wall_s", "tokens_per_s"}


def strip_timings(obj):
    if isinstance(obj, dict):
        return {k: strip_timings(v) for k, v in obj.items() if k not in TIMING_FIELDS}
    if isinstance(obj, list):
        return [strip_timings(v) for v in obj]
    return obj


def differences(a, b, where: str = "") -> list[str]:
    """Paths at which two JSON values differ (exactly: the same seed must give the same numbers)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{where}.{k}: only on one side" for k in sorted(set(a) ^ set(b))]
        return out + [d for k in sorted(set(a) & set(b)) for d in differences(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} vs {len(b)} entries"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {a!r} vs {b!r}"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rev", nargs="?", default="HEAD", help="git revision to compare with (default HEAD)")
    ap.add_argument("--dir", default="figures", help="figures folder, relative to the repository root; a folder "
                    "outside it (a run with figures_dir=...) is compared with the revision's figures/")
    args = ap.parse_args(argv)
    root = Path(subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                               check=True).stdout.strip())
    changed = 0
    for path in sorted((root / args.dir).glob("*.json")):
        rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else f"figures/{path.name}"
        old = subprocess.run(["git", "show", f"{args.rev}:{rel}"], cwd=root, capture_output=True, text=True)
        if old.returncode:
            print(f"{rel}: not in {args.rev}")
            continue
        diffs = differences(strip_timings(json.loads(old.stdout)), strip_timings(json.loads(path.read_text())))
        changed += bool(diffs)
        print(f"{rel}: {'identical' if not diffs else f'{len(diffs)} differences, e.g.'}")
        for d in diffs[:5]:
            print(f"   {d}")
    print(f"{changed} of the figures' JSON files differ from {args.rev} (timings left out)")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
