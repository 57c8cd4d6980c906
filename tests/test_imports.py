"""What a notebook's first cell imports: not the transformers `Trainer`, the Llama classes or math-verify, which cost
~4 s in every kernel of a warm rerun (which trains and grades nothing); the modules that need them import them where
they do."""
import pkgutil
import subprocess
import sys

import ttc_utils.stages

HEAVY = ("transformers.trainer", "transformers.models.llama.modeling_llama", "math_verify")


def test_notebook_imports_leave_the_trainer_llama_and_math_verify_unloaded():
    stages = [f"ttc_utils.stages.{m.name}" for m in pkgutil.iter_modules(ttc_utils.stages.__path__)]
    modules = ["ttc_utils.run", "ttc_utils.config", "ttc_utils.plots", "ttc_utils.results", "ttc_utils.findings",
               *stages]
    code = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_heavy_modules_still_load_where_they_are_used():
    # the check above is only meaningful if these names are what those imports load
    code = ("import sys\nfrom transformers import LlamaForCausalLM, Trainer\n"
            "from ttc_utils.tasks.math import equivalent\nequivalent('1/2', '0.5')\n"
            f"print(all(m in sys.modules for m in {HEAVY!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"
