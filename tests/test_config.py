"""Parameters: one default each, profiles that override only what differs, and clear errors before any compute."""
import json
import math
import subprocess
import sys

import papermill as pm
import pytest
import yaml

from ttc_utils import config
from ttc_utils.config import (
    NOTEBOOK_CONFIGS,
    NOTEBOOKS_DIR,
    PARAMS_DIR,
    PROFILES,
    PoolNotebookConfig,
    PrmSearchNotebookConfig,
    WorldNotebookConfig,
    load_config,
    load_profile,
    section_defaults,
)


def test_default_profile_builds_a_valid_config():
    cfg = load_config("00_world", {"profile": "default"})
    assert cfg == WorldNotebookConfig()  # the default profile changes nothing
    assert cfg.sizes()[0].non_embedding_params < cfg.sizes()[-1].non_embedding_params
    assert cfg.cache().root.parts[-2:] == ("cache", "default")


@pytest.mark.parametrize("name,value", [
    ("profile", "nightly"),
    ("seed", 1.5), ("seed", "0"), ("seed", -1),
    ("samples_per_question", 0), ("samples_per_question", -4),
    ("train_tokens", 0), ("num_test", -1), ("batch_size", 0),
    ("temperature", 0.0), ("temperature", math.inf), ("temperature", math.nan),
    ("ladder_layers", [1]), ("ladder_hidden", [50, 64]), ("head_size", 24), ("head_size", 0),
    ("validity_seeds", []), ("validity_seeds", [0, 0]), ("validity_seeds", [-1]),
    ("max_steps", 0), ("ops", "+/"),
    ("learning_rate", -0.1),
    ("policy_path", "./no/such/model"),
])
def test_bad_parameter_is_a_clear_error_naming_it(name, value):
    with pytest.raises((ValueError, FileNotFoundError), match=name):
        WorldNotebookConfig(**{name: value})


def test_a_world_whose_problems_outgrow_the_models_context_is_refused():
    # 40 steps: problems of ~1,700 tokens in a 160-token context, and notebook 00's training crawls
    with pytest.raises(ValueError, match=r"max_steps=40 .*context limit of 160 tokens") as e:
        WorldNotebookConfig(max_steps=40)
    assert "max_steps <= 10" in str(e.value)
    WorldNotebookConfig(max_steps=10)  # the longest that fits


@pytest.mark.parametrize("name,value", [("pool_size", 0), ("pool_size", 1), ("num_shards", 0), ("shard", 3),
                                        ("shard", -1), ("num_bins", 0), ("num_bins", 11), ("num_bins", 2.5),
                                        ("num_subsets", 0), ("temperature", math.inf)])
def test_bad_pool_parameter_is_a_clear_error_naming_it(name, value):
    with pytest.raises(ValueError, match=name):
        PoolNotebookConfig(**{name: value})


def test_more_bins_than_test_questions_is_refused():
    with pytest.raises(ValueError, match="num_bins=5 .*num_test=4"):
        PoolNotebookConfig(num_test=4)


def test_pool_budgets_are_powers_of_two_up_to_the_pool():
    assert PoolNotebookConfig().budgets() == [1, 2, 4, 8, 16, 32, 64, 128, 256]


@pytest.mark.parametrize("name,value", [
    ("beam_width", 3), ("beam_width", 0), ("beam_width", 512), ("lookahead_steps", [1, -1]), ("lookahead_steps", []),
    ("lookahead_steps", [5]), ("lookahead_steps", [0]), ("lookahead_steps", [1, 5]),
    ("aggregation", "mean"), ("verifier_rung", 4), ("verifier_rung", -1), ("verifier_head", "lora"),
    ("max_budget", 48), ("max_budget", 512), ("search_questions", 401),
    ("prm_rollouts", 0), ("prm_samples", 0), ("accounting", "flops"), ("verifier_learning_rate", 0.0),
    ("verifier_learning_rate", math.nan), ("search_seeds", 0),
])
def test_bad_search_parameter_is_a_clear_error_naming_it(name, value):
    with pytest.raises(ValueError, match=name):
        PrmSearchNotebookConfig(**{name: value})


def test_beam_width_and_lookahead_must_fit_the_largest_budget():
    with pytest.raises(ValueError, match="beam_width=16 .*max_budget=8"):
        PrmSearchNotebookConfig(max_budget=8, pool_size=16, beam_width=16)
    with pytest.raises(ValueError, match=r"lookahead_steps=\[1, 7\] .*max_budget=16.*\[7\]"):
        PrmSearchNotebookConfig(max_budget=16, pool_size=16, lookahead_steps=[1, 7])
    assert PrmSearchNotebookConfig(max_budget=32, pool_size=32, lookahead_steps=[1, 3, 7]).lookahead_steps == [1, 3, 7]


@pytest.mark.parametrize("name", ["data_dir", "figures_dir"])
def test_an_unwritable_folder_is_an_error_naming_it(tmp_path, name):
    (tmp_path / "afile").write_text("")  # a folder below a regular file cannot exist, not even for root
    with pytest.raises(ValueError, match=f"{name}=.*afile/x.*cannot create or write"):
        WorldNotebookConfig(**{name: str(tmp_path / "afile" / "x")})


def test_folders_are_created_and_relative_ones_resolved_against_the_notebooks(tmp_path):
    cfg = WorldNotebookConfig(data_dir=str(tmp_path / "new" / "data"), figures_dir="../figures")
    assert (tmp_path / "new" / "data").is_dir()
    assert cfg.figures_dir == str((NOTEBOOKS_DIR / ".." / "figures").resolve())
    assert isinstance(cfg.data_dir, str) and cfg.as_dict()["data_dir"] == cfg.data_dir


def test_a_policy_folder_without_config_json_is_an_error_naming_policy_path(tmp_path):
    with pytest.raises((ValueError, FileNotFoundError), match="policy_path=.*config.json"):
        WorldNotebookConfig(policy_path=str(tmp_path))


def test_a_hub_id_offline_that_is_not_cached_fails_at_once_naming_policy_path(monkeypatch):
    import time
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises((ValueError, FileNotFoundError), match="policy_path='no-such-org/no-such-model'"):
        WorldNotebookConfig(policy_path="no-such-org/no-such-model")
    assert time.perf_counter() - t0 < 5  # before any compute, not 25-70 s into notebook 00


def test_a_policy_folder_with_a_broken_tokenizer_fails_naming_policy_path(tiny_policy_dir, tmp_path):
    import shutil
    broken = tmp_path / "broken"
    shutil.copytree(tiny_policy_dir, broken)
    (broken / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match="policy_path=.*tokenizer"):
        WorldNotebookConfig(policy_path=str(broken))


def test_a_policy_folder_that_loads_is_accepted(tiny_policy_dir):
    assert WorldNotebookConfig(policy_path=str(tiny_policy_dir)).policy_path == str(tiny_policy_dir)


def test_resolution_order_is_defaults_then_profile_then_explicit_parameters():
    smoke = load_profile("smoke")
    cfg = load_config("02_prm_search", {"profile": "smoke", "max_steps": 3, "seed": None, "modulus": 7})
    assert cfg.max_steps == 3 and cfg.modulus == 7  # explicit beats profile and default
    assert cfg.learning_rate == smoke["learning_rate"] != section_defaults()["learning_rate"]  # profile beats default
    assert cfg.seed == section_defaults()["seed"] and cfg.accounting == "arxiv"  # None and absent: the default
    assert cfg.profile == "smoke" and cfg.cache().root.parts[-2:] == ("cache", "smoke")
    assert load_config("00_world", {"profile": None}).profile == "default"


def test_the_profile_must_be_a_file_of_params(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="profile='nightly'"):
        load_config("00_world", {"profile": "nightly"})
    monkeypatch.setattr(config, "PARAMS_DIR", tmp_path)
    (tmp_path / "nightly.yaml").write_text("num_test: 64\n")  # a new profile is one file
    assert load_config("00_world", {"profile": "nightly"}).num_test == 64


def test_an_unknown_name_in_a_profile_file_names_the_file_and_the_name(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "PARAMS_DIR", tmp_path)
    (tmp_path / "typo.yaml").write_text("num_test: 64\nsampels_per_question: 3\n")
    with pytest.raises(ValueError, match=r"typo\.yaml: unknown parameter 'sampels_per_question'"):
        load_config("00_world", {"profile": "typo"})
    (tmp_path / "named.yaml").write_text("profile: smoke\n")  # the file's name is the profile
    with pytest.raises(ValueError, match="named.yaml: unknown parameter 'profile'"):
        load_profile("named")


def test_an_unknown_literal_global_is_an_error_naming_it_and_the_allowed_names():
    with pytest.raises(ValueError, match=r"common=\{'seed': 0\} is not a parameter of 00_world.*allowed names: "
                                         r"\['profile', 'seed'"):
        load_config("00_world", {"profile": "smoke", "common": {"seed": 0}})
    with pytest.raises(ValueError, match="pool_size=16 is not a parameter of 00_world"):
        load_config("00_world", {"profile": "smoke", "pool_size": 16})


def test_what_ipython_and_the_notebook_itself_put_in_its_namespace_is_no_error(tmp_path, monkeypatch):
    import ttc_utils.plots
    import ttc_utils.stages

    cells = ["from ttc_utils.plots import METHOD_STYLE\nfrom ttc_utils import stages\n%matplotlib inline",
             'load_config("00_world", globals())', "greedy = [0.5]\nfor name in 'ab':\n    pass"]
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "source": c} for c in cells]}
    (tmp_path / "00_world.ipynb").write_text(json.dumps(nb))
    monkeypatch.setattr(config, "NOTEBOOKS_DIR", tmp_path)
    ns = {"profile": "smoke", "data_dir": str(tmp_path / "d"), "figures_dir": str(tmp_path / "f"),
          "In": [""], "Out": {}, "_": 3, "_i1": "x", "get_ipython": print, "exit": None,  # IPython's
          "METHOD_STYLE": ttc_utils.plots.METHOD_STYLE, "stages": ttc_utils.stages,  # imported by the notebook
          "greedy": [0.5], "name": "b"}  # later cells' variables, there when a cell is rerun in JupyterLab
    assert load_config("00_world", ns).profile == "smoke"
    # an injected literal that shadows an import is still an injected name
    with pytest.raises(ValueError, match="METHOD_STYLE=.* is not a parameter of 00_world"):
        load_config("00_world", {**ns, "METHOD_STYLE": dict(ttc_utils.plots.METHOD_STYLE)})
    with pytest.raises(ValueError, match="stages=.* is not a parameter of 00_world"):
        load_config("00_world", {**ns, "stages": {"seed": 0}})


def test_a_profile_passed_as_a_papermill_parameters_file_fails():
    """`papermill -f notebooks/params/smoke.yaml` injects names of other notebooks: the config cell refuses them."""
    for profile in PROFILES:
        params = load_profile(profile)
        for notebook, cls in NOTEBOOK_CONFIGS.items():
            if set(params) - set(cls.parameter_names()):
                with pytest.raises(ValueError, match="is not a parameter of"):
                    load_config(notebook, params)


@pytest.mark.parametrize("profile", PROFILES)
def test_profile_files_list_only_known_names_that_differ_from_the_defaults(profile):
    raw = yaml.safe_load((PARAMS_DIR / f"{profile}.yaml").read_text()) or {}
    defaults = section_defaults()
    assert set(raw) <= set(defaults) - {"profile"}
    assert {k for k, v in raw.items() if v == defaults[k]} == set()
    for notebook, cls in NOTEBOOK_CONFIGS.items():
        if raw.get("ladder_paths") and cls.world_only:  # a real-model profile: refused, with the reason
            with pytest.raises(ValueError, match=f"not allowed in {notebook}: {cls.world_only[:30]}"):
                load_config(notebook, {"profile": profile})
        elif not raw.get("ladder_paths"):  # (real models are hub ids: tests/test_real_models.py runs them locally)
            load_config(notebook, {"profile": profile})  # and every notebook's config under it is valid


def test_every_parameter_has_one_default_and_a_comment():
    source = (NOTEBOOKS_DIR.parent / "ttc_utils" / "config.py").read_text().splitlines()
    names = [f for s in config.SECTIONS for f in s.__dataclass_fields__]
    assert len(names) == len(set(names))  # no name in two sections
    for name in names:
        lines = [line for line in source if line.strip().startswith(f"{name}: ")]
        assert len(lines) == 1 and "  # " in lines[0], name


@pytest.mark.parametrize("notebook", NOTEBOOK_CONFIGS)
def test_parameters_cell_declares_exactly_the_config_with_none_meaning_the_profile(notebook):
    """Opening a notebook and running it gives the default profile; papermill can parse every line."""
    nb = json.loads((NOTEBOOKS_DIR / f"{notebook}.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    lines = "".join(cell["source"]).splitlines()
    assert all(line.count("=") == 1 and "  # " in line and ":" not in line.split("=")[0] for line in lines)
    declared = pm.inspect_notebook(str(NOTEBOOKS_DIR / f"{notebook}.ipynb"))
    assert list(declared) == NOTEBOOK_CONFIGS[notebook].parameter_names()
    assert {k: v["default"] for k, v in declared.items()} == {k: '"default"' if k == "profile" else "None"
                                                             for k in declared}
    assert all(v["help"] for v in declared.values())
    after = "".join(nb["cells"][nb["cells"].index(cell) + 1]["source"])
    assert f'load_config("{notebook}", globals())' in after


def test_as_dict_and_repr_show_every_resolved_value():
    cfg = load_config("02_prm_search", {"profile": "smoke"})
    d = cfg.as_dict()
    assert list(d) == PrmSearchNotebookConfig.parameter_names()
    assert d["data_dir"] == str((NOTEBOOKS_DIR / ".." / "data").resolve())
    assert all(f"{k}={v!r}" in repr(cfg) for k, v in d.items())
    assert PrmSearchNotebookConfig.from_params(d) == cfg
    with pytest.raises(ValueError, match="samples_per_qestion"):
        WorldNotebookConfig.from_params({"samples_per_qestion": 3})


def test_config_imports_no_stage():
    code = ("import sys, ttc_utils.config; print([m for m in sys.modules if m.startswith('ttc_utils.') and "
            "m.split('.')[1] in {'prm', 'search_plan', 'search', 'stages', 'pool', 'sampling', 'difficulty', "
            "'evaluation', 'estimators', 'plots', 'scoring', 'labels', 'verifier_training'}])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("lookahead_steps,max_budget", [([1, 3], 256), ([1, 3], 16), ([7], 32), ([1], 8)])
def test_search_plan_budgets_and_lookahead_costs(lookahead_steps, max_budget):
    cfg = PrmSearchNotebookConfig(lookahead_steps=lookahead_steps, max_budget=max_budget, beam_width=2,
                                  pool_size=max(256, max_budget))
    from ttc_utils.stages.prm_search import search_plan

    plan = search_plan(cfg)
    assert cfg.search_budgets() == [2 ** i for i in range(max_budget.bit_length())]
    for s in plan:
        assert s.x in cfg.search_budgets()  # every point sits on the generation-budget axis
        assert s.x == s.search.num_beams * (s.search.lookahead + 1)
        assert s.search.num_beams % s.search.beam_width == 0
        assert s.search.aggregation == cfg.aggregation
    # every accepted lookahead depth is run at some budget (none is silently skipped)
    assert {s.search.lookahead for s in plan if s.method == "lookahead"} == set(lookahead_steps)
    labels = {s.label for s in plan}
    assert {"beam M=sqrt N", "beam M=2", "DVTS M=2", "beam M=2, same-size PRM"} <= labels
    assert all(s.x >= 2 for s in plan)  # budget 1 is one plain sample, never a search
    for s in plan:  # M = sqrt N only where N is a square: never a rounded copy of another setting
        if "sqrt" in s.label:
            assert s.search.beam_width ** 2 == s.search.num_beams
    keys = [(s.label, s.x) for s in plan]
    assert len(keys) == len(set(keys))  # one point per setting and budget


def test_every_claim_of_notebook_02_names_settings_the_plan_or_the_results_table_has():
    from ttc_utils.stages.prm_search import claims, search_plan

    cfg = PrmSearchNotebookConfig()
    plan = search_plan(cfg)
    selection = {"majority", "best-of-N weighted", "best-of-N weighted, same-size PRM", "PRM last", "PRM min",
                 "PRM prod", "ORM", "PRM best-of-N", "PRM last, same-size"}
    runs = {(s.label, s.x) for s in plan}
    for claim in claims(cfg, plan):
        for arm in [claim.better, claim.worse, *(claim.then or ())]:
            assert arm.setting in selection or (arm.setting, arm.budget) in runs, (claim.finding, arm)


@pytest.mark.parametrize("name,value", [
    ("revision_context", 0), ("revision_context", 5), ("revision_max_budget", 48), ("revision_samples", 0),
    ("revision_test_questions", 401), ("revision_seeds", 0), ("revision_learning_rate", -1.0),
    ("train_precision", "fp16"), ("lr_scaling", "sqrt"),
])
def test_bad_revision_parameter_is_a_clear_error_naming_it(name, value):
    from ttc_utils.config import RevisionNotebookConfig
    with pytest.raises(ValueError, match=name):
        RevisionNotebookConfig(**{name: value})


def test_the_ratio_sweep_covers_every_power_of_two_shape():
    from ttc_utils.config import RevisionNotebookConfig
    shapes = RevisionNotebookConfig(revision_max_budget=8).revision_shapes()
    assert shapes == [(1, 1), (1, 2), (2, 1), (1, 4), (2, 2), (4, 1), (1, 8), (2, 4), (4, 2), (8, 1)]


@pytest.mark.parametrize("name,value", [
    ("folds", 1), ("folds", 0), ("folds", 2.0), ("search_methods", ["beam", "mcts"]), ("search_methods", []),
    ("search_methods", ["beam", "beam"]), ("search_methods", "beam"), ("prediction_samples", 0),
    ("prediction_samples", 129), ("efficiency_resamples", 10),
])
def test_bad_compute_optimal_parameter_is_a_clear_error_naming_it(name, value):
    from ttc_utils.config import ComputeOptimalNotebookConfig
    with pytest.raises(ValueError, match=name):
        ComputeOptimalNotebookConfig(**{name: value})


def test_another_notebook_config_from_this_one_has_that_notebook_keys():
    from ttc_utils.config import ComputeOptimalNotebookConfig, PrmSearchNotebookConfig
    cfg = ComputeOptimalNotebookConfig(seed=3, max_budget=64, folds=3)
    sub = cfg.for_notebook("02_prm_search")
    assert type(sub) is PrmSearchNotebookConfig
    assert sub.as_dict() == PrmSearchNotebookConfig(seed=3, max_budget=64).as_dict()


def test_a_cached_table_key_ignores_where_things_go_but_not_what_is_computed(tmp_path):
    from ttc_utils.config import PrmSearchNotebookConfig
    a = PrmSearchNotebookConfig(figures_dir=str(tmp_path / "a"), data_dir=str(tmp_path / "d1"))
    b = PrmSearchNotebookConfig(figures_dir=str(tmp_path / "b"), data_dir=str(tmp_path / "d2"))
    assert a.cache_key() == b.cache_key() and a.as_dict() != b.as_dict()
    assert PrmSearchNotebookConfig(max_budget=64).cache_key() != a.cache_key()
