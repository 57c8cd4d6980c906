"""Every notebook runs end to end through papermill with the smoke profile, and is committed stripped."""
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill as pm
import pytest

from ttc_utils.config import load_config
from ttc_utils.run import NOTEBOOKS_DIR, notebook_names, run_notebook

FIGURES = NOTEBOOKS_DIR.parent / "figures" / "smoke"


@pytest.mark.parametrize("name", notebook_names())
def test_notebook_is_committed_without_outputs_and_has_one_parameters_cell(name):
    nb = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
    assert nb.metadata.kernelspec.name == "python3"
    assert sum("parameters" in c.metadata.get("tags", []) for c in nb.cells) == 1
    for c in nb.cells:
        if c.cell_type == "code":
            assert not c.outputs and c.execution_count is None


@pytest.mark.parametrize("name", notebook_names())
def test_notebooks_are_narrative_with_at_most_120_lines_of_code_outside_the_parameters_cell(name):
    nb = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
    lines = sum(len(c.source.splitlines()) for c in nb.cells
                if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", []))
    assert lines <= 120, f"{name}: {lines} lines of code outside the parameters cell; move logic into ttc_utils"


def test_notebooks_pass_nbstripout_verify():
    nbstripout = Path(sys.executable).parent / "nbstripout"
    paths = [str(NOTEBOOKS_DIR / f"{n}.ipynb") for n in notebook_names()]
    assert subprocess.run([str(nbstripout), "--verify", *paths], check=False).returncode == 0


def plain_papermill(name: str, tmp_path, parameters: dict) -> Path:
    """Run a notebook the way a user would, without the runner, from a cwd that is not notebooks/."""
    out = tmp_path / f"{name}.ipynb"
    pm.execute_notebook(str(NOTEBOOKS_DIR / f"{name}.ipynb"), str(out), parameters=parameters, kernel_name="python3",
                        cwd=str(tmp_path), progress_bar=False)
    return out


def run_smoke(name: str, tmp_path, stems: tuple[str, ...], plain: bool = False) -> nbformat.NotebookNode:
    """Run a notebook under `smoke`: no cell may fail, and each figure has its PNG, PDF and JSON.

    `plain`: through plain papermill with only `profile` (the runner passes exactly that too).
    """
    if plain:
        out = plain_papermill(name, tmp_path, {"profile": "smoke"})
    else:
        out = run_notebook(name, "smoke", out_dir=tmp_path, progress=False)
    nb = nbformat.read(out, as_version=4)
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    # warnings and library chatter on stderr are for a user to interpret: a notebook shows none
    stderr = [o.text for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "stream" and o.name == "stderr"]
    assert not stderr, f"{name} wrote to stderr: {stderr}"
    for stem in stems:
        for ext in ("png", "pdf", "json"):
            assert (FIGURES / f"{stem}.{ext}").stat().st_size > 0
    return nb


def shown_config(nb: nbformat.NotebookNode, name: str) -> str:
    """The config cell's displayed `cfg` (its repr lists every resolved value)."""
    cell = next(c for c in nb.cells if f'load_config("{name}", globals())' in c.source)
    return "".join(o["data"]["text/plain"] for o in cell.outputs if o.output_type == "execute_result")


@pytest.mark.notebook
@pytest.mark.slow
def test_00_world_smoke(tmp_path):
    """Plain `papermill ... -p profile smoke`, run from elsewhere, resolves what the runner resolves, and writes
    its figures where the runner does (relative folders are relative to notebooks/, not the cwd)."""
    nb = run_smoke("00_world", tmp_path, ("nb00_training_loss", "nb00_greedy_accuracy", "nb00_pass1_hist"),
                   plain=True)
    assert shown_config(nb, "00_world") == repr(load_config("00_world", {"profile": "smoke"}))
    hist = json.loads((FIGURES / "nb00_pass1_hist.json").read_text())
    assert sum(b["questions"] for b in hist["buckets"]) == len(hist["per_question"])
    greedy = json.loads((FIGURES / "nb00_greedy_accuracy.json").read_text())
    assert {g["model"] for g in greedy} == {"d16l1", "d32l1", "d48l1", "d64l1"}
    validity = json.loads((FIGURES / "nb00_validity.json").read_text())
    assert {v["seed"] for v in validity} == {0, 1}  # smoke's validity_seeds
    assert all(isinstance(v["met"], bool) and v["value"] for v in validity)
    assert sum(v["criterion"].startswith("(c)") and "beats" in v["criterion"] for v in validity) == 2 * 3


@pytest.mark.notebook
@pytest.mark.slow
def test_01_difficulty_bins_smoke(tmp_path):
    run_smoke("01_difficulty_bins", tmp_path, ("nb01_pass1_bins", "nb01_coverage_majority", "nb01_ladder_per_bin"))
    bins = json.loads((FIGURES / "nb01_pass1_bins.json").read_text())
    assert sum(b["questions"] for b in bins["bins"]) == 32
    curves = json.loads((FIGURES / "nb01_coverage_majority.json").read_text())["overall"]
    by = {(c["method"], c["budget"]): c["accuracy"] for c in curves}
    assert by[("pass_at_n", 1)] == pytest.approx(by[("majority", 1)], abs=1e-12)  # one sample: exactly equal
    # majority@N is a Monte Carlo estimate (20 subsets in smoke), pass@N exact: allow the MC error
    assert all(by[("pass_at_n", n)] >= by[("majority", n)] - 0.02 for m, n in by if m == "majority")


@pytest.mark.notebook
@pytest.mark.slow
def test_02_prm_search_smoke(tmp_path):
    run_smoke("02_prm_search", tmp_path, ("fig03a_search_methods", "fig03b_search_per_bin", "fig13_prm_aggregation",
                                          "fig14_prm_vs_orm", "iclr13_bon_vs_weighted", "nb02_prm_quality"))
    fig3 = json.loads((FIGURES / "fig03a_search_methods.json").read_text())
    labels = {c["label"] for c in fig3["curves"]}
    assert {"majority", "best-of-N weighted", "beam M=sqrt N", "beam M=4", "1-step lookahead M=sqrt N"} <= labels
    assert all(0 <= c["accuracy"] <= 1 for c in fig3["curves"])
    findings = json.loads((FIGURES / "nb02_findings.json").read_text())["findings"]
    assert len(findings) >= 10
    assert all(f["verdict"] in ("holds", "fails", "inconclusive", "uninformative") for f in findings)
    assert all({"difference", "low", "high", "questions", "differing"} <= set(f) for f in findings)
    assert {c["label"] for c in fig3["flops_curves"]} == labels


SAMPLED_BY_SHARDS = ("scores-", "search-")  # the cache folders notebook 02's shards write


@pytest.mark.notebook
@pytest.mark.slow
def test_02_shards_sample_the_pool_scores_and_search_of_one_run(tmp_path):
    """Two shards of notebook 02, each on its own copy of notebooks 00-01's cache, write disjoint chunks that merge
    into exactly the pool scores and search chunks of the unsharded run; in the notebook itself a shard is an error."""
    import shutil

    from ttc_utils.cache import Cache
    smoke = load_config("02_prm_search", {"profile": "smoke"}).cache().root
    if not any(smoke.glob("search-*")):
        run_notebook("02_prm_search", "smoke", out_dir=tmp_path, progress=False)
    written = {}
    for s in range(2):
        root = tmp_path / f"shard{s}"
        shutil.copytree(smoke, root / "cache" / "smoke",
                        ignore=lambda _, names: [n for n in names if n.startswith(("prm-", "verifier-", "results-",
                                                                                   *SAMPLED_BY_SHARDS))])
        assert run_notebook("02_prm_search", "smoke", {"shard": s, "num_shards": 2, "data_dir": str(root)},
                            progress=False) is None
        written[s] = {str(p.relative_to(root / "cache" / "smoke")) for p in (root / "cache" / "smoke").glob("*/chunk-*")
                      if p.parent.name.startswith(SAMPLED_BY_SHARDS)}
    assert written[0] and written[1] and not written[0] & written[1]
    merged = Cache(tmp_path / "merged")
    merged.merge_from([tmp_path / "shard0" / "cache" / "smoke", tmp_path / "shard1" / "cache" / "smoke"])
    got = {str(p.relative_to(merged.root)): p.read_bytes() for p in merged.root.glob("*/chunk-*")
           if p.parent.name.startswith(SAMPLED_BY_SHARDS)}
    assert written[0] | written[1] == set(got)
    assert {k.split("/")[0].rsplit("-", 1)[0] for k in got} >= {"scores-prm", "scores-orm", "search-beam-N4-M2-k0"}
    for folder in {k.split("/")[0] for k in got}:  # every chunk of each run, byte for byte the unsharded run's
        want = {str(p.relative_to(smoke)): p.read_bytes() for p in (smoke / folder).glob("chunk-*")}
        assert want == {k: v for k, v in got.items() if k.startswith(folder + "/")}
    with pytest.raises(pm.PapermillExecutionError, match="num_shards"):
        plain_papermill("02_prm_search", tmp_path, {"profile": "smoke", "shard": 1, "num_shards": 2,
                                                    "data_dir": str(tmp_path / "shard1")})


@pytest.mark.notebook
@pytest.mark.slow
def test_an_injected_name_that_is_no_parameter_fails_in_the_config_cell(tmp_path):
    """What `papermill -f notebooks/params/<old-style profile>.yaml` did: inject unused names, silently."""
    with pytest.raises(pm.PapermillExecutionError) as e:
        plain_papermill("00_world", tmp_path, {"profile": "smoke", "common": {"seed": 0}})
    assert 'load_config("00_world", globals())' in e.value.source  # the first cell after the parameters
    assert e.value.ename == "ValueError" and "common=" in e.value.evalue and "not a parameter" in e.value.evalue


@pytest.mark.notebook
@pytest.mark.slow
def test_03_revisions_smoke(tmp_path):
    run_smoke("03_revisions", tmp_path, ("nb03_revision_training", "fig06_revisions_seq_vs_par", "fig07_ratio_weighted",
                                         "fig10_ratio_majority", "fig15_revision_verifiers"))
    numbers = json.loads((FIGURES / "nb03_findings.json").read_text())
    findings = numbers["findings"]
    assert len(findings) == 8
    assert len(numbers["context_reading"]) == 4  # every pair; the pairs on the reference path
    assert all(f["verdict"] in ("holds", "fails", "inconclusive", "uninformative") for f in findings)
    fig7 = json.loads((FIGURES / "fig07_ratio_weighted.json").read_text())["per_budget"]
    assert {(r["budget"], r["ratio"]) for r in fig7} >= {(8, 1 / 8), (8, 0.5), (8, 2.0), (8, 8.0)}


@pytest.mark.notebook
@pytest.mark.slow
def test_04_compute_optimal_smoke(tmp_path):
    """Runs from notebooks 02 and 03's smoke caches (the tests above made them)."""
    run_smoke("04_compute_optimal", tmp_path, ("fig04_compute_optimal_search", "fig08_compute_optimal_revisions",
                                               "fig01a_compute_optimal_summary", "nb04_efficiency_ratio",
                                               "fig11_revisions_predicted_bins", "fig12_search_predicted_bins",
                                               "nb04_adaptive_budget"))
    numbers = json.loads((FIGURES / "nb04_findings.json").read_text())
    assert len(numbers["findings"]) == 13
    assert all(f["verdict"] in ("holds", "fails", "inconclusive", "uninformative") for f in numbers["findings"])
    eff = json.loads((FIGURES / "nb04_efficiency_ratio.json").read_text())
    budgets = {(r["kind"], r["bins"]): set() for r in eff["efficiency"]}
    for r in eff["efficiency"]:
        budgets[(r["kind"], r["bins"])].add(r["budget"])
        assert r["low"] <= r["high"]
    assert budgets[("search", "oracle bins")] == {1, 2, 4, 8, 16}
    assert budgets[("revisions", "oracle bins")] == {1, 2, 4, 8}
    fig4 = {c["setting"] for c in json.loads((FIGURES / "fig04_compute_optimal_search.json").read_text())}
    assert {"majority", "ORM best-of-N weighted", "PRM best-of-N weighted", "compute-optimal search, oracle bins",
            "compute-optimal search, predicted bins"} <= fig4


@pytest.mark.notebook
@pytest.mark.slow
def test_05_flops_matched_smoke(tmp_path):
    run_smoke("05_flops_matched", tmp_path, ("fig09_flops_matched", "fig01b_flops_matched_improvement",
                                             "iclr17_weak_verifiers", "iclr16_ladder_beam_vs_bon",
                                             "nb05_exchange_rate"))
    numbers = json.loads((FIGURES / "nb05_findings.json").read_text())
    # 2 kinds x 3 R x 3 difficulty groups, each decided
    assert len(numbers["findings"]) == 18 + 1  # and whether the PRM with flipped labels selects worse
    assert all(f["verdict"] in ("holds", "fails", "inconclusive", "uninformative") for f in numbers["findings"])
    assert len(numbers["matched"]) == 3 * 3 * 2  # larger rungs x R x kinds
    assert all(m["budget"] <= m["K"] for m in numbers["matched"])
