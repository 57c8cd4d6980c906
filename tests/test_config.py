"""Parameter validation happens before any compute and names the parameter; profiles match the notebooks."""
import papermill as pm
import pytest
import yaml

from ttc_utils.config import (PARAMS_DIR, PROFILES, PoolNotebookConfig, PrmSearchNotebookConfig, WorldNotebookConfig,
                             load_profile)
from ttc_utils.run import NOTEBOOKS_DIR, notebook_names, run_notebook


def default_params():
    return {k: v for k, v in load_profile("default", "00_world").items()}


def test_default_profile_builds_a_valid_config():
    cfg = WorldNotebookConfig.from_params(default_params())
    assert cfg.sizes()[0].non_embedding_params < cfg.sizes()[-1].non_embedding_params
    assert cfg.cache().root.parts[-2:] == ("cache", "default")


@pytest.mark.parametrize("name,value", [
    ("profile", "nightly"),
    ("seed", 1.5), ("seed", "0"), ("seed", -1),
    ("samples_per_question", 0), ("samples_per_question", -4),
    ("train_tokens", 0), ("num_test", -1), ("batch_size", 0),
    ("temperature", 0.0),
    ("ladder_layers", [1]), ("ladder_hidden", [50, 64]),
    ("max_steps", 0), ("ops", "+/"),
    ("learning_rate", -0.1),
    ("policy_path", "./no/such/model"),
])
def test_bad_parameter_is_a_clear_error_naming_it(name, value):
    params = {**default_params(), name: value}
    with pytest.raises((ValueError, FileNotFoundError), match=name):
        WorldNotebookConfig.from_params(params)


@pytest.mark.parametrize("name,value", [("pool_size", 0), ("num_shards", 0), ("shard", 3), ("shard", -1),
                                        ("num_bins", 0), ("num_bins", 11), ("num_bins", 2.5), ("num_subsets", 0)])
def test_bad_pool_parameter_is_a_clear_error_naming_it(name, value):
    params = {**load_profile("default", "01_difficulty_bins"), name: value}
    with pytest.raises(ValueError, match=name):
        PoolNotebookConfig.from_params(params)


def test_pool_budgets_are_powers_of_two_up_to_the_pool():
    cfg = PoolNotebookConfig.from_params(load_profile("default", "01_difficulty_bins"))
    assert cfg.budgets() == [1, 2, 4, 8, 16, 32, 64, 128, 256]


def test_unknown_or_missing_parameter_names_fail():
    with pytest.raises(ValueError, match="samples_per_qestion"):
        WorldNotebookConfig.from_params({**default_params(), "samples_per_qestion": 3})
    params = default_params()
    del params["seed"]
    with pytest.raises(ValueError, match="seed"):
        WorldNotebookConfig.from_params(params)


def test_unknown_profile_fails_in_the_runner_before_running():
    with pytest.raises(ValueError, match="profile"):
        run_notebook("00_world", "nightly")
    with pytest.raises(ValueError, match="not allowed"):
        run_notebook("00_world", "smoke", overrides={"sampels": 3})


@pytest.mark.parametrize("profile", PROFILES)
def test_profile_files_only_name_declared_parameters(profile):
    raw = yaml.safe_load((PARAMS_DIR / f"{profile}.yaml").read_text())
    assert raw["common"]["profile"] == profile
    for name in notebook_names():
        declared = pm.inspect_notebook(str(NOTEBOOKS_DIR / f"{name}.ipynb"))
        params = load_profile(profile, name)
        assert set(params) <= set(declared), name


def test_notebook_defaults_are_the_default_profile():
    """Opening a notebook in JupyterLab and running it gives the same run as the default profile."""
    for name in notebook_names():
        declared = pm.inspect_notebook(str(NOTEBOOKS_DIR / f"{name}.ipynb"))
        defaults = {k: yaml.safe_load(v["default"]) for k, v in declared.items()}
        for k, v in load_profile("default", name).items():
            assert defaults[k] == v, (name, k)


@pytest.mark.parametrize("name,value", [
    ("beam_width", 3), ("beam_width", 0), ("lookahead_steps", [1, -1]), ("lookahead_steps", []),
    ("aggregation", "mean"), ("verifier_rung", 4), ("verifier_rung", -1), ("verifier_head", "lora"),
    ("max_budget", 48), ("max_budget", 512), ("search_questions", 401),
    ("prm_rollouts", 0), ("prm_samples", 0), ("accounting", "flops"), ("verifier_learning_rate", 0.0),
    ("search_seeds", 0),
])
def test_bad_search_parameter_is_a_clear_error_naming_it(name, value):
    params = {**load_profile("default", "02_prm_search"), name: value}
    with pytest.raises(ValueError, match=name):
        PrmSearchNotebookConfig.from_params(params)


def test_search_plan_budgets_and_lookahead_costs():
    from ttc_utils.search_plan import search_plan
    cfg = PrmSearchNotebookConfig.from_params(load_profile("default", "02_prm_search"))
    plan = search_plan(cfg)
    assert cfg.search_budgets() == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    for s in plan:
        assert s.x in cfg.search_budgets()  # every point sits on the generation-budget axis
        assert s.x == s.search.num_beams * (s.search.lookahead + 1)
        assert s.search.num_beams % s.search.beam_width == 0
        assert s.search.aggregation == cfg.aggregation
    labels = {s.label for s in plan}
    assert {"beam M=sqrt N", "beam M=4", "1-step lookahead M=sqrt N", "3-step lookahead M=sqrt N",
            "3-step lookahead M=4", "DVTS M=4"} <= labels
