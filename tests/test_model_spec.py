"""Model specs: errors that name the parameter before any compute, and cache keys that hash the weights."""
import shutil
import time

import pytest

from ttc_utils import model_spec
from ttc_utils.cache import Cache
from ttc_utils.model_spec import ModelSpec
from ttc_utils.models import ModelSize, build_policy
from ttc_utils.tokenizer import build_tokenizer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def save_policy(path, seed):
    tok = build_tokenizer()
    build_policy(ModelSize(16, 1, 2), tok, max_len=160, seed=seed).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def two_policies(tmp_path_factory):
    """The same architecture under seeds 0 and 1, each in a folder named 'policy'."""
    return [save_policy(tmp_path_factory.mktemp(f"seed{s}") / "policy", s) for s in (0, 1)]


def test_same_shape_different_weights_get_different_keys(two_policies):
    a, b = two_policies
    assert (a / "model.safetensors").stat().st_size == (b / "model.safetensors").stat().st_size
    assert (a / "config.json").read_bytes() == (b / "config.json").read_bytes()
    assert ModelSpec(str(a)).key() != ModelSpec(str(b)).key()
    assert ModelSpec(str(a)).key().startswith("policy-") and len(ModelSpec(str(a)).key()) == len("policy-") + 16
    assert ModelSpec(a).key() == ModelSpec(str(a)).key() and ModelSpec(a).name == "policy"  # a Path is accepted


def test_a_copy_elsewhere_under_the_same_name_gets_the_same_key(two_policies, tmp_path):
    copy = tmp_path / "elsewhere" / "policy"
    shutil.copytree(two_policies[0], copy)  # new mtimes, same bytes
    assert ModelSpec(str(copy)).key() == ModelSpec(str(two_policies[0])).key()
    renamed = shutil.copytree(two_policies[0], tmp_path / "other-name")
    assert ModelSpec(str(renamed)).key() != ModelSpec(str(copy)).key()


def test_dtype_backend_and_device_type_change_the_key(two_policies):
    base = ModelSpec(str(two_policies[0]))
    keys = {base.key(), ModelSpec(base.path, dtype="bfloat16").key(), ModelSpec(base.path, backend="vllm").key(),
            ModelSpec(base.path, device="cuda").key()}
    assert len(keys) == 4
    assert ModelSpec(base.path, device="cuda:0").key() == ModelSpec(base.path, device="cuda:1").key()
    assert ModelSpec(base.path, param="verifier_path").key() == base.key()  # the parameter name is not keyed


def test_tokenizer_and_config_contents_are_keyed(two_policies, tmp_path):
    copy = shutil.copytree(two_policies[0], tmp_path / "policy")
    before = ModelSpec(str(copy)).key()
    tok = copy / "tokenizer_config.json"
    tok.write_text(tok.read_text().replace("<unk>", "<UNK>"))
    assert ModelSpec(str(copy)).key() != before


def count_hashing(monkeypatch):
    calls = []
    real = model_spec.file_sha256
    monkeypatch.setattr(model_spec, "file_sha256", lambda p: calls.append(p) or real(p))
    return calls


def test_the_memo_avoids_rehashing_until_a_file_changes(two_policies, tmp_path, monkeypatch):
    folder = shutil.copytree(two_policies[1], tmp_path / "policy")
    calls = count_hashing(monkeypatch)
    first = ModelSpec(str(folder)).key()
    assert len(calls) == len(model_spec.keyed_files(folder)) >= 4
    assert ModelSpec(str(folder)).key() == first and ModelSpec(str(folder), dtype="float16").key() != first
    assert len(calls) == len(model_spec.keyed_files(folder))  # remembered, whatever the dtype
    (folder / "config.json").write_text((folder / "config.json").read_text() + "\n")
    assert ModelSpec(str(folder)).key() != first and len(calls) > len(model_spec.keyed_files(folder))


def test_a_cached_model_folder_is_keyed_from_its_manifest(two_policies, tmp_path, monkeypatch):
    cache = Cache(tmp_path / "cache")
    with cache.model_dir("policy", {"seed": 0}) as (final, work):
        shutil.copytree(two_policies[0], work, dirs_exist_ok=True)
    plain = shutil.copytree(two_policies[0], tmp_path / "plain" / final.name)  # the same files, no manifest
    assert cache.model_manifest(final) and cache.model_manifest(plain) is None
    calls = count_hashing(monkeypatch)
    assert ModelSpec(str(final)).key() == ModelSpec(str(plain)).key()
    assert all(str(plain) in str(p) for p in calls) and calls  # only the folder without a manifest was read


def test_a_hub_id_is_keyed_by_its_pinned_or_cached_commit(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--some-org--some-model"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    (repo / "snapshots" / COMMIT).mkdir(parents=True)
    (repo / "snapshots" / COMMIT / "config.json").write_text("{}")
    key = ModelSpec("some-org/some-model").key()
    assert key.startswith(f"some-org/some-model@{COMMIT}-")
    assert ModelSpec("some-org/some-model", revision=COMMIT).key() == key
    assert ModelSpec("some-org/some-model", dtype="bfloat16").key() != key
    with pytest.raises(ValueError, match=r"^policy_path='some-org/some-model'.*pin revision"):
        ModelSpec("some-org/some-model", revision="v2", param="policy_path").key()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert ModelSpec("some-org/some-model").check().path == "some-org/some-model"  # cached: fine offline


def bad(path, match, exc=(ValueError, FileNotFoundError), **kw):
    with pytest.raises(exc, match=f"^policy_path={path!r}.*{match}"):
        ModelSpec(path, param="policy_path", **kw).check()


def test_bad_paths_are_errors_naming_the_parameter(tmp_path):
    bad("", "expected a model folder or a hub id")
    (tmp_path / "empty").mkdir()
    bad(str(tmp_path / "empty"), "no config.json", FileNotFoundError)
    bad(str(tmp_path / "missing"), "no such model folder", FileNotFoundError)
    bad("not a hub id", "no such model folder", FileNotFoundError)


def test_a_broken_tokenizer_or_config_is_an_error_naming_the_parameter(two_policies, tmp_path):
    folder = shutil.copytree(two_policies[0], tmp_path / "policy")
    assert ModelSpec(str(folder)).check().path == str(folder)
    (folder / "tokenizer.json").write_text("garbage {")
    bad(str(folder), r"tokenizer cannot be loaded \(\w+", ValueError)
    folder = shutil.copytree(two_policies[0], tmp_path / "policy2")
    (folder / "config.json").write_text("garbage {")
    bad(str(folder), r"config cannot be loaded \(", ValueError)


def test_bad_options_are_errors_naming_the_parameter(two_policies):
    path = str(two_policies[0])
    bad(path, "dtype='float64' is not allowed", ValueError, dtype="float64")
    bad(path, "device='gpu' is not allowed", ValueError, device="gpu")
    bad(path, "device='cuda:x' is not allowed", ValueError, device="cuda:x")
    bad(path, "revision='main' is not allowed for a local folder", ValueError, revision="main")
    bad(path, "backend='' is not allowed", ValueError, backend="")
    with pytest.raises(ValueError, match="^policy_path=.*dtype"):
        ModelSpec(path, dtype="float64", param="policy_path").key()  # the key checks its inputs too


def test_an_uncached_hub_id_offline_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    bad("no-such-org/no-such-model", "not in the local hub cache.*HF_HUB_OFFLINE=1", FileNotFoundError)
    assert time.perf_counter() - start < 2


def test_an_unfetchable_hub_config_online_is_a_one_line_error(monkeypatch):
    import transformers

    def unreachable(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'.\nCheck your internet connection.")

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", unreachable)
    with pytest.raises(ValueError, match=r"^policy_path='org/model': the config cannot be loaded") as err:
        ModelSpec("org/model", param="policy_path").check()
    assert "\n" not in str(err.value) and "couldn't connect" in str(err.value)
