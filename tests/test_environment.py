"""environment.yml is a thin wrapper around pyproject.toml: their dependency lists must agree."""
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert sorted(x for x in pip if not x.startswith("-e")) == sorted(project["dependencies"])
    assert "-e .[dev]" in pip
    assert any(str(d).startswith("python=3.11") for d in env["dependencies"] if isinstance(d, str))
    assert project["requires-python"] == ">=3.11"
    assert {"dev", "vllm"} <= set(project["optional-dependencies"])
