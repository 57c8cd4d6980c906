"""Run the suite's notebooks through papermill under a profile.

    python -m ttc_utils.run --profile default              # every notebook, in order
    python -m ttc_utils.run --profile smoke 00_world       # one notebook
    python -m ttc_utils.run --profile default -p seed=1    # override a parameter (VALUE is parsed as YAML)

The runner passes papermill just `profile` and the overrides, exactly what
`papermill notebooks/00_world.ipynb out.ipynb -p profile smoke -p seed 1` passes: the notebook's config cell
resolves everything else (`config.load_config`). Override names are checked against the notebook's
`parameters` cell first (papermill only warns about unknown names), and the whole config is resolved once
here too, so a bad value fails in a second instead of after a kernel start. A failing notebook is reported
in one line naming the cell and the error; the full log is its executed copy, in
`notebooks/executed/<profile>/` (git-ignored). Every notebook is checked before the first one runs, and each runs in
a kernel started while the notebook before it ran, its imports already done (`start_kernel`).

A shard of notebook 02 (`-p shard=I -p num_shards=K`) is not executed as a notebook: it only samples its share of the
pool scores and the search (`stages.prm_search.sample_shard`), since a shard's mix of settings has nothing to draw.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
from pathlib import Path

import papermill as pm
import yaml
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync

from .checks import check
from .config import NOTEBOOK_CONFIGS, NOTEBOOKS_DIR, load_config, profiles

__all__ = ["NOTEBOOKS_DIR", "NotebookFailed", "failure_message", "main", "notebook_names", "run_notebook"]


class NotebookFailed(RuntimeError):
    """A notebook raised; the message is one line: the notebook, the cell, the error and where the full log is."""

    def __init__(self, name: str, profile: str, cell, ename: str, evalue: str, log: Path):
        self.name, self.profile, self.cell, self.ename, self.evalue, self.log = name, profile, cell, ename, evalue, log
        super().__init__(failure_message(name, profile, cell, ename, evalue, log))


def failure_message(name: str, profile: str, cell, ename: str, evalue: str, log) -> str:
    evalue = " ".join(line.strip() for line in str(evalue).splitlines() if line.strip())  # one line, always
    return f"{name} ({profile}) failed in cell {cell}: {ename}: {evalue}; full log: {log}"


def notebook_names(notebooks_dir: Path | None = None) -> list[str]:
    return sorted(p.stem for p in Path(notebooks_dir or NOTEBOOKS_DIR).glob("[0-9][0-9]_*.ipynb"))


# ipykernel 7.4 logs a warning to the terminal at every kernel start that the kernel talks to papermill over local TCP
# without encryption; its own log says nothing else a user of the runner would act on (cells' warnings go to the
# executed notebook, not to this log).
KERNEL_ARGS = ["--IPKernelApp.log_level=ERROR"]

# What every notebook's first cell imports (torch and transformers through the config, pandas, matplotlib: ~4 s on 2
# cores) and every stage module: a kernel started ahead (`start_kernel`) imports them while the notebook before it runs,
# then deletes the names, so the notebook's namespace holds only what its own cells define.
PRELOAD = ["matplotlib.pyplot", "pandas", "seaborn", "ttc_utils.plots"]


def preload_arguments() -> list[str]:
    """Kernel arguments that import `PRELOAD` and every `ttc_utils.stages` module at start-up, leaving no name."""
    from . import stages
    modules = PRELOAD + [f"{stages.__name__}.{m.name}" for m in pkgutil.iter_modules(stages.__path__)]
    roots = sorted({m.split(".")[0] for m in modules})
    return [f"--IPKernelApp.exec_lines=import {', '.join(modules)}", f"--IPKernelApp.exec_lines=del {', '.join(roots)}"]


def start_kernel(notebooks_dir: Path | None = None) -> AsyncKernelManager:
    """A kernel for a notebook to run in later (`run_notebook(..., km=...)`), started now: it boots and imports
    (`preload_arguments`) on the other core while the notebook before it runs. A warm rerun spent ~5 s of every
    notebook there. Stop it with `stop_kernel`."""
    km = AsyncKernelManager(kernel_name="python3")
    run_sync(km.start_kernel)(extra_arguments=[*KERNEL_ARGS, "--HistoryManager.hist_file=:memory:",
                                               *preload_arguments()], cwd=str(notebooks_dir or NOTEBOOKS_DIR))
    return km


def stop_kernel(km: AsyncKernelManager, now: bool = False) -> None:
    """Shut a kernel down and wait for it: politely (as papermill does), or at once (`now`) when it ran nothing."""
    run_sync(km.shutdown_kernel)(now=now)


# Notebooks whose shards only sample (a shard's settings are a mix, so it has nothing to draw): the runner calls the
# stage that samples a shard's share instead of executing the notebook.
SAMPLE_ONLY_SHARDS = {"02_prm_search": "ttc_utils.stages.prm_search"}


def samples_only(name: str, cfg) -> bool:
    """True for a shard of a notebook of `SAMPLE_ONLY_SHARDS` (`cfg`: its config): it samples here, in no kernel."""
    return name in SAMPLE_ONLY_SHARDS and cfg is not None and cfg.num_shards > 1


def run_shard(name: str, cfg, progress: bool = True) -> None:
    """One shard's sampling of notebook `name` (its module's `sample_shard`) into the shard's cache."""
    t0 = time.perf_counter()
    counts = importlib.import_module(SAMPLE_ONLY_SHARDS[name]).sample_shard(cfg, progress=progress)
    done = ", ".join(f"{v:,} {k}" for k, v in counts.items())
    print(f"{name} ({cfg.profile}) shard {cfg.shard} of {cfg.num_shards}: {done} in {time.perf_counter() - t0:.0f} s "
          f"-> {cfg.cache().root}; merge the shards' caches (python -m ttc_utils.cache merge), then run with "
          f"num_shards=1", flush=True)


def checked_parameters(name: str, profile: str, overrides: dict | None = None, notebooks_dir: Path | None = None
                       ) -> tuple[dict, object]:
    """(papermill's parameters for notebook `name`, its resolved config or None for a notebook without one); raises
    ValueError for an unknown notebook, profile or parameter name or a bad value."""
    notebooks_dir = Path(notebooks_dir or NOTEBOOKS_DIR)
    names = notebook_names(notebooks_dir)
    check(name in names, "notebook", name, f"one of {names}")
    check(profile in profiles(), "profile", profile, f"one of {profiles()} (notebooks/params/*.yaml)")
    overrides = dict(overrides or {})
    src = notebooks_dir / f"{name}.ipynb"
    declared = pm.inspect_notebook(str(src))
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise ValueError(f"parameters {unknown} are not allowed for {name}: its parameters cell declares "
                         f"{sorted(declared)}")
    params = {**overrides, "profile": profile}
    # the notebook's own config cell does the same, after a kernel start
    return params, (load_config(name, params) if name in NOTEBOOK_CONFIGS else None)


def run_notebook(name: str, profile: str, overrides: dict | None = None, out_dir: Path | None = None,
                 progress: bool = True, notebooks_dir: Path | None = None, km: AsyncKernelManager | None = None
                 ) -> Path | None:
    """Execute one notebook under `profile` (plus `overrides`), in kernel `km` when given (`start_kernel`; the caller
    stops it), else in one papermill starts; returns the executed copy (None for a shard that only samples,
    `SAMPLE_ONLY_SHARDS`).

    Raises ValueError for an unknown notebook, profile or parameter name or a bad value (before running),
    and NotebookFailed when a cell raises.
    """
    notebooks_dir = Path(notebooks_dir or NOTEBOOKS_DIR)
    params, cfg = checked_parameters(name, profile, overrides, notebooks_dir)
    if samples_only(name, cfg):
        return run_shard(name, cfg, progress)
    src = notebooks_dir / f"{name}.ipynb"
    out_dir = Path(out_dir or notebooks_dir / "executed" / profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{name}.ipynb"
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(str(src), str(out), parameters=params, kernel_name="python3", cwd=str(notebooks_dir),
                            progress_bar=progress, extra_arguments=KERNEL_ARGS, **({"km": km} if km else {}))
    except pm.PapermillExecutionError as e:
        # the traceback is in the executed copy; repeating it here buries the one line that matters
        raise NotebookFailed(name, profile, e.exec_count, e.ename, e.evalue, out) from None
    print(f"{name} ({profile}): {time.perf_counter() - t0:.0f} s -> {out}", flush=True)
    return out


def run_all(names: list[str], profile: str, overrides: dict | None = None) -> None:
    """Run notebooks `names` in order, each in a kernel started while the notebook before it ran (`start_kernel`).
    Every notebook is checked first: a bad name, profile or value fails before any notebook runs or kernel starts.
    A kernel that ran its notebook is asked to exit and left to it (~1.3 s) while the next notebook runs; a shard that
    only samples (`samples_only`) gets none."""
    configs = [checked_parameters(n, profile, overrides)[1] for n in names]
    in_kernel = [n for n, cfg in zip(names, configs) if not samples_only(n, cfg)]
    spare, exiting = (start_kernel() if in_kernel else None), []
    try:
        for name in names:
            if name not in in_kernel:
                run_notebook(name, profile, overrides)
                continue
            in_kernel.remove(name)
            km, spare = spare, (start_kernel() if in_kernel else None)
            ran = False
            try:
                ran = run_notebook(name, profile, overrides, km=km) is not None
            finally:
                if ran:
                    run_sync(km.request_shutdown)()
                    exiting.append(km)
                else:
                    stop_kernel(km, now=True)
    finally:
        if spare is not None:
            stop_kernel(spare, now=True)
        for km in exiting:
            run_sync(km.finish_shutdown)()  # kills it if it has not exited in jupyter_client's grace time
            run_sync(km.cleanup_resources)()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="*", help="notebook names (default: all, in order)")
    ap.add_argument("--profile", default="default", help=f"one of {profiles()}")
    ap.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                    help="override a parameter (VALUE is parsed as YAML)")
    args = ap.parse_args(argv)
    overrides = {}
    for item in args.param:
        if "=" not in item:
            ap.error(f"--param {item!r} is not allowed: expected NAME=VALUE")
        k, v = item.split("=", 1)
        overrides[k] = yaml.safe_load(v)
    names = args.notebooks or notebook_names()
    try:
        run_all(names, args.profile, overrides)
    except (NotebookFailed, ValueError, TypeError, FileNotFoundError) as e:
        # our errors are written to be read in one line; a traceback adds nothing but length
        print(e, file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
