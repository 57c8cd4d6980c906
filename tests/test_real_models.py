"""The real-model path on CPU: the `math500` profile's code path (MATH-500, a ladder of given models, an open PRM)
runs notebooks 01 and 02 end to end with tiny random models built here in place of the hub's; bad real-model input
fails before any compute, naming the parameter.

The tiny models answer nothing right, so these tests check plumbing (every cell runs, every figure is written, the
open PRM's scores reach the tables), never accuracy. MATH-500 is read from ../shared/data/math500; where that folder
is absent, from a few problems in MATH-500's format written here, so the path is always exercised."""
import json
import string
from pathlib import Path

import pytest
import torch
from tokenizers import AddedToken
from transformers import LlamaConfig, LlamaForCausalLM

from ttc_utils.config import load_config, load_profile, notebook_config
from ttc_utils.run import run_notebook
from ttc_utils.stages import common
from ttc_utils.tokenizer import build_tokenizer

SHARED_MATH500 = Path(__file__).resolve().parents[2] / "shared" / "data" / "math500" / "test.jsonl"


def math500_file(folder: Path) -> str:
    """The real MATH-500 file, or (where it is absent) 12 problems in its format written into `folder`."""
    if SHARED_MATH500.is_file():
        return str(SHARED_MATH500)
    path = folder / "test.jsonl"
    rows = [{"problem": f"What is ${a} + {b}$?", "solution": f"${a} + {b} = \\boxed{{{a + b}}}$.",
             "answer": str(a + b), "subject": "Prealgebra", "level": 1 + a % 5,
             "unique_id": f"test/prealgebra/{a}.json"} for a, b in zip(range(12), range(3, 15))]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture(scope="module")
def math500(tmp_path_factory) -> str:
    return math500_file(tmp_path_factory.mktemp("math500"))


def tiny_llama(folder: Path, hidden: int, layers: int, specials: tuple[str, ...] = ()) -> str:
    """A random Llama with a character tokenizer over printable text (plus `specials`), saved as a hub model is."""
    tokenizer = build_tokenizer(string.printable)
    tokenizer.add_special_tokens({"additional_special_tokens": [AddedToken(s, normalized=False) for s in specials]})
    torch.manual_seed(hidden)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=hidden // 32, num_key_value_heads=hidden // 32,
                         max_position_embeddings=4096, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def tiny_models(root: Path) -> dict[str, str]:
    """A ladder of two tiny Llamas (one 32-wide head each, so vLLM takes them too) and a Math-Shepherd-style PRM."""
    return {"small": tiny_llama(root / "small", 32, 1), "large": tiny_llama(root / "large", 64, 2),
            "prm": tiny_llama(root / "prm", 32, 1, specials=("ки",))}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_models(tmp_path_factory.mktemp("real-models"))


SIZES = {"pool_size": 8, "num_bins": 2, "num_subsets": 5}


def math500_params(notebook: str, models, math500, tmp_path, **kw) -> dict:
    """`notebook`'s parameters for the `math500` profile with the tiny models, on CPU through transformers, at a size
    that runs in a minute."""
    params = {"task_path": math500, "ladder_paths": [models["small"], models["large"]], "prm_path": models["prm"],
              "policy_backend": "transformers", "device": "cpu", "data_dir": str(tmp_path / "data"),
              "figures_dir": str(tmp_path / "figures"), "num_test": 8, "max_new_tokens": 24, **SIZES, **kw}
    names = notebook_config(notebook).parameter_names()
    return {k: v for k, v in params.items() if k in names}


SEARCH = {"search_questions": 4, "max_budget": 8, "beam_width": 2, "lookahead_steps": [1], "search_seeds": 1,
          "max_rounds": 3}


def test_the_math500_profile_names_real_models_and_an_open_prm():
    p = load_profile("math500")
    assert p["task"] == "math" and p["policy_backend"] == "vllm" and len(p["ladder_paths"]) == 2
    assert "prm_path" in p and not p.get("trust_remote_code", False)  # remote code: opt-in only


def test_a_math_config_builds_the_math_task_and_a_ladder_of_the_given_models(models, math500, tmp_path):
    params = math500_params("01_difficulty_bins", models, math500, tmp_path)
    cfg = load_config("01_difficulty_bins", {"profile": "math500", **params})
    task = common.task(cfg)
    assert task.key == "math-chatml" and task.step_delimiter == "\n\n"
    questions = common.test_questions(cfg)
    assert len(questions) == 8 and questions[0].qid.startswith("test/")
    assert task.prompt(questions[0]).startswith("<|im_start|>system") and task.question(questions[0]) in \
        task.prompt(questions[0])
    ladder, curves = common.ladder(cfg)
    assert list(ladder.path) == [models["small"], models["large"]] and curves.empty
    assert ladder.non_embedding_params.is_monotonic_increasing and (ladder.backend == "transformers").all()
    assert common.max_new_tokens(cfg) == 24


@pytest.mark.notebook
@pytest.mark.slow
def test_notebooks_01_and_02_run_on_math500_with_an_open_prm(models, math500, tmp_path):
    run_notebook("01_difficulty_bins", "math500", math500_params("01_difficulty_bins", models, math500, tmp_path,
                                                                 ladder_samples=2), out_dir=tmp_path, progress=False)
    run_notebook("02_prm_search", "math500", math500_params("02_prm_search", models, math500, tmp_path, **SEARCH),
                 out_dir=tmp_path, progress=False)
    figures = tmp_path / "figures"
    for stem in ("nb01_pass1_bins", "nb01_coverage_majority", "nb01_ladder_per_bin", "fig03a_search_methods",
                 "fig13_prm_aggregation", "nb02_prm_quality", "nb02_findings"):
        assert (figures / f"{stem}.json").stat().st_size > 0
    fig3 = json.loads((figures / "fig03a_search_methods.json").read_text())["curves"]
    labels = {c["label"] for c in fig3}
    assert {"majority", "best-of-N weighted", "beam M=2"} <= labels
    assert not any("same-size" in label for label in labels)  # an open PRM comes without the same-size PRM
    quality = json.loads((figures / "nb02_prm_quality.json").read_text())["quality"]
    assert [q["verifier"] for q in quality][:3] == ["PRM"] * 3 and "ORM" not in {q["verifier"] for q in quality}
    findings = json.loads((figures / "nb02_findings.json").read_text())["findings"]
    assert findings and not any("ORM" in f["finding"] or "same-size" in f["finding"] for f in findings)


@pytest.mark.parametrize("notebook", ["00_world", "03_revisions", "04_compute_optimal", "05_flops_matched"])
def test_a_notebook_of_the_embedded_world_refuses_real_models_and_says_why(notebook, models):
    with pytest.raises(ValueError, match=f"ladder_paths=.*not allowed in {notebook}: it "):
        load_config(notebook, {"profile": "smoke", "ladder_paths": [models["small"]]})


def test_math_without_models_or_an_open_prm_is_a_clear_error(models, math500):
    with pytest.raises(ValueError, match="ladder_paths=\\[\\] is not allowed: .*only the embedded world trains"):
        load_config("01_difficulty_bins", {"profile": "smoke", "task": "math", "task_path": math500})
    with pytest.raises(ValueError, match="prm_path='' is not allowed: .*no training split"):
        load_config("02_prm_search", {"profile": "smoke", "task": "math", "ladder_paths": [models["small"]],
                                      "task_path": math500})


def test_a_prm_trained_on_other_steps_than_the_task_s_is_a_clear_error(models):
    # the world ends a step with one newline; Qwen2.5-Math-PRM was trained on paragraphs
    with pytest.raises(ValueError, match="prm_backend='qwen_prm' is not allowed: expected a PRM trained on the task"):
        load_config("02_prm_search", {"profile": "smoke", "prm_path": models["prm"], "prm_backend": "qwen_prm"})


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("policy_backend", "sglang", "policy_backend='sglang' is not allowed: expected one of"),
    ("prm_backend", "mystery", "prm_backend='mystery' is not allowed"),
    ("task", "gsm8k", "task='gsm8k' is not allowed"),
    ("prompt_style", "chatml", "prompt_style='chatml' is not allowed: expected 'plain' for task='arithmetic'"),
    ("task_path", "x.jsonl", "task_path='x.jsonl' is not allowed: expected '' for task='arithmetic'"),
    ("max_new_tokens", -1, "max_new_tokens=-1 is not allowed"),
])
def test_bad_real_model_parameters_name_themselves(name, value, expected):
    with pytest.raises(ValueError, match=expected):
        load_config("02_prm_search", {"profile": "smoke", name: value})


def test_a_missing_open_prm_or_ladder_model_is_an_error_naming_its_parameter(tmp_path):
    missing = str(tmp_path / "nowhere")
    with pytest.raises((ValueError, FileNotFoundError), match="prm_path="):
        load_config("02_prm_search", {"profile": "smoke", "prm_path": missing})
    with pytest.raises((ValueError, FileNotFoundError), match=r"ladder_paths\[0\]="):
        load_config("01_difficulty_bins", {"profile": "smoke", "ladder_paths": [missing]})
