"""The runner: names and values are checked before a kernel starts, and a failing notebook is reported in one line."""
import nbformat
import pytest

from ttc_utils import run
from ttc_utils.run import NotebookFailed, failure_message, main, run_notebook


def test_unknown_notebook_profile_or_parameter_fails_before_running():
    with pytest.raises(ValueError, match="notebook='99_nothing'"):
        run_notebook("99_nothing", "smoke")
    with pytest.raises(ValueError, match="profile='nightly'"):
        run_notebook("00_world", "nightly")
    with pytest.raises(ValueError, match=r"\['sampels'\] are not allowed for 00_world.*'samples_per_question'"):
        run_notebook("00_world", "smoke", overrides={"sampels": 3})


def test_a_bad_value_fails_before_running(tmp_path):
    with pytest.raises(ValueError, match="temperature=0"):
        run_notebook("00_world", "smoke", overrides={"temperature": 0}, out_dir=tmp_path)
    assert not list(tmp_path.iterdir())  # no kernel was started, nothing was written


def test_failure_message_is_one_line():
    msg = failure_message("00_world", "smoke", 4, "ValueError", "seed=-1 is not allowed:\n  expected an int >= 0",
                          "/x/00_world.ipynb")
    assert msg == ("00_world (smoke) failed in cell 4: ValueError: seed=-1 is not allowed: expected an int >= 0; "
                   "full log: /x/00_world.ipynb")


def write_failing_notebook(folder):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell('profile = "default"  # the profile\nx = 1  # a parameter')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell('raise ValueError(f"boom {x}")')]
    nbformat.write(nb, folder / "99_fails.ipynb")


@pytest.mark.notebook
def test_a_failing_notebook_raises_one_line_naming_the_error_and_the_log(tmp_path):
    write_failing_notebook(tmp_path)
    with pytest.raises(NotebookFailed) as e:
        run_notebook("99_fails", "smoke", overrides={"x": 7}, out_dir=tmp_path / "out", progress=False,
                     notebooks_dir=tmp_path)
    msg = str(e.value)
    log = tmp_path / "out" / "99_fails.ipynb"
    # cells: parameters (1), papermill's injected parameters (2), the raising cell (3)
    assert msg == f"99_fails (smoke) failed in cell 3: ValueError: boom 7; full log: {log}"
    assert isinstance(e.value, RuntimeError) and e.value.__suppress_context__
    assert "boom 7" in log.read_text()  # the executed copy holds the full traceback


def test_main_prints_one_line_and_exits_1(monkeypatch, capsys):
    def fails(name, profile, overrides, km=None):
        raise NotebookFailed(name, profile, 4, "ValueError", "boom", "/x/00_world.ipynb")

    monkeypatch.setattr(run, "run_notebook", fails)
    with pytest.raises(SystemExit) as e:
        main(["--profile", "smoke", "00_world"])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert err == "00_world (smoke) failed in cell 4: ValueError: boom; full log: /x/00_world.ipynb\n"


def test_main_reports_a_bad_parameter_in_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--profile", "smoke", "-p", "sampels=3", "00_world"])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sampels" in err and "Traceback" not in err


def test_main_checks_every_notebook_before_any_runs(monkeypatch, capsys):
    started = []
    monkeypatch.setattr(run, "start_kernel", lambda *a: started.append(a))
    with pytest.raises(SystemExit):  # 01_difficulty_bins declares no samples_per_question
        main(["--profile", "smoke", "-p", "samples_per_question=3", "00_world", "01_difficulty_bins"])
    assert "01_difficulty_bins" in capsys.readouterr().err and started == []


@pytest.mark.notebook
def test_a_kernel_started_ahead_has_the_stages_imported_and_no_names_left(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell('profile = "default"  # the profile')
    params.metadata["tags"] = ["parameters"]
    probe = ("import sys\n"
             "print(sorted(m for m in sys.modules if m.startswith('ttc_utils.stages.')))\n"
             "print(sorted(k for k in globals() if not k.startswith('_')))")
    nb.cells = [params, nbformat.v4.new_code_cell(probe)]
    nbformat.write(nb, tmp_path / "98_probe.ipynb")
    km = run.start_kernel(tmp_path)
    try:
        out = run_notebook("98_probe", "smoke", out_dir=tmp_path / "out", progress=False, notebooks_dir=tmp_path,
                           km=km)
    finally:
        run.stop_kernel(km)
    stages, names = nbformat.read(out, as_version=4).cells[-1].outputs[0]["text"].splitlines()
    assert "ttc_utils.stages.revisions" in stages and "ttc_utils.stages.world" in stages
    assert eval(names) == sorted(["In", "Out", "get_ipython", "exit", "quit", "open", "sys", "profile"])


def test_a_shard_that_only_samples_gets_no_kernel(monkeypatch):
    started, ran = [], []
    monkeypatch.setattr(run, "start_kernel", lambda *a: started.append(a))
    monkeypatch.setattr(run, "run_notebook", lambda name, profile, overrides, km=None: ran.append((name, km)))
    main(["--profile", "smoke", "-p", "shard=0", "-p", "num_shards=2", "02_prm_search"])
    assert started == [] and ran == [("02_prm_search", None)]
