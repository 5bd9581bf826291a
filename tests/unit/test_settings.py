"""helpers.core.settings: one settings file for a workshop, with parameter > MMS_* > file > per-learner > default."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from helpers.clients import manifests
from helpers.core import config, settings
from helpers.core.errors import SetupError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in (*settings.ENV.values(), settings.SETTINGS_FILE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path


NO_POD = lambda target: ""


def resolve(*args, **kwargs) -> dict[str, str]:
    return settings.resolve_with_sources(*args, **kwargs)[0]


def test_built_in_defaults_on_the_local_target_are_the_guides() -> None:
    found = resolve({}, own_namespace=NO_POD, user="Alice")
    assert found == {"target": "local", "namespace": "mms", "server_name": "triton-mms", "bucket": "triton",
                     "api_group": "", "preset": "guide", "language": "en"}
    assert set(settings.sources({}, own_namespace=NO_POD).values()) == {"default"}


def test_precedence_parameter_then_env_then_file_then_learner_then_default(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = settings.save({"namespace": "from-file", "bucket": "file-bucket", "server_name": "file-srv",
                          "target": "cluster", "preset": "small"})
    assert path == tmp_path / "config" / "mms-notebooks" / "settings.yaml"
    monkeypatch.setenv("MMS_BUCKET", "env-bucket")
    monkeypatch.setenv("MMS_SERVER_NAME", "env-srv")
    params = {"server_name": "param-srv", "namespace": None, "bucket": "", "api_group": None}
    found = resolve(params, own_namespace=NO_POD, user="bob")
    where = settings.sources(params, own_namespace=NO_POD, user="bob")
    assert found["server_name"] == "param-srv" and where["server_name"] == "parameter"
    assert found["bucket"] == "env-bucket" and where["bucket"] == "MMS_BUCKET"
    assert found["namespace"] == "from-file" and where["namespace"] == "settings file"
    assert found["preset"] == "small" and found["target"] == "cluster"
    # without the file's namespace, the cluster target takes the per-learner default
    settings.save({"namespace": ""})
    assert "namespace" not in settings.load()
    assert resolve({}, own_namespace=NO_POD, user="bob")["namespace"] == "mms-bob"
    assert settings.sources({}, own_namespace=NO_POD, user="bob")["namespace"] == "per-learner default"


def test_per_learner_namespace_in_a_notebook_pod_and_outside(tmp_path: Path) -> None:
    from helpers.clients.target import InCluster

    (tmp_path / "namespace").write_text("kubeflow-user-example-com\n")
    pod = InCluster(tmp_path)
    assert pod.own_namespace() == "kubeflow-user-example-com" and InCluster(tmp_path / "no").own_namespace() == ""
    in_pod = lambda target: pod.own_namespace()
    assert resolve({"target": "cluster"}, own_namespace=in_pod)["namespace"] == "kubeflow-user-example-com"
    # the local target never takes a per-learner namespace: the guide's `mms` stays
    assert resolve({"target": "local"}, own_namespace=in_pod, user="bob")["namespace"] == "mms"
    assert settings.learner_name("Jane.Doe@Example.COM") == "mms-jane-doe-example-com"
    assert settings.learner_name("___") == "mms"
    long = settings.learner_name("x" * 100)
    assert len(long) == 63 and settings.validate("namespace", long) == long


def test_in_a_pod_the_built_in_target_is_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    in_pod = lambda target: "kubeflow-user-a"
    values, where = settings.resolve_with_sources({}, own_namespace=in_pod)
    assert (values["target"], values["namespace"]) == ("cluster", "kubeflow-user-a")
    assert (where["target"], where["namespace"]) == ("default", "per-learner default")
    assert resolve({"target": "local"}, own_namespace=in_pod)["namespace"] == "mms"


def test_env_var_target_reaches_the_namespace_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMS_TARGET", "cluster")
    assert resolve({}, own_namespace=NO_POD, user="eve")["namespace"] == "mms-eve"
    monkeypatch.setenv("MMS_NAMESPACE", "team-a")
    assert resolve({}, own_namespace=NO_POD, user="eve")["namespace"] == "team-a"


@pytest.mark.parametrize("text, expect", [
    ("namespace: Bad_Name\n", "not a valid Kubernetes name"),
    ("colour: blue\n", "unknown setting"),
    ("- a list\n", "not a mapping"),
    ("namespace: [unclosed\n", "cannot read"),
    ("preset: huge\n", "preset 'huge'"),
])
def test_a_bad_settings_file_names_itself_and_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       text: str, expect: str) -> None:
    path = tmp_path / "workshop.yaml"
    path.write_text(text)
    monkeypatch.setenv("MMS_SETTINGS", str(path))
    with pytest.raises(SetupError) as err:
        resolve({})
    assert expect in err.value.cause and str(path) in err.value.cause and err.value.fix


def test_save_checks_before_writing_and_keeps_other_settings(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    settings.save({"bucket": "b-one", "preset": "small"}, path)
    before = path.read_text()
    with pytest.raises(SetupError):
        settings.save({"bucket": "Not A Bucket"}, path)
    with pytest.raises(SetupError):
        settings.save({"password": "x"}, path)
    assert path.read_text() == before
    settings.save({"namespace": "team-b"}, path)
    assert settings.load(path) == {"namespace": "team-b", "bucket": "b-one", "preset": "small"}
    assert path.read_text().startswith("# mms-notebooks settings")


def test_presets_fill_the_manifests_resources() -> None:
    small = settings.preset("small")
    assert small.manifest_values() == {"server_cpu": "1", "server_memory": "2Gi", "model_memory": "512Mi"}
    values = dict(namespace="n", server_name="s", api_group="serving.kserve.io", bucket="b", model_name="cifar10")
    guide_server = manifests.render("multi_model_triton_server", **values)[0]
    assert guide_server["spec"]["predictor"]["triton"]["resources"]["requests"] == {"cpu": "1", "memory": "16Gi"}
    server = manifests.render("multi_model_triton_server", **values, **small.manifest_values())[0]
    assert server["spec"]["predictor"]["triton"]["resources"]["limits"] == {"cpu": "1", "memory": "2Gi"}
    model = manifests.render("trained_model1", **values, **small.manifest_values())[0]
    assert model["spec"]["model"]["memory"] == "512Mi"
    with pytest.raises(SetupError):
        settings.preset("medium")


def test_presets_say_what_they_ask_for_and_the_instructors_capacity_is_theirs() -> None:
    assert settings.preset("guide").summary() == ("preset guide: the server asks for 1 cpu and 16Gi, each model for "
                                                  "1Gi (the guide's own values)")
    small, guide = settings.preset("small"), settings.preset("guide")
    assert small.capacity(30) == {"cpu": 37.5, "memory_gi": 67.5}
    assert guide.capacity(30) == {"cpu": 37.5, "memory_gi": 487.5}
    # both models, and 05's third, fit the small server: KServe would refuse one that does not
    assert 3 * settings.gib(small.model_memory) <= settings.gib(small.server_memory)
    checklist = (config.project_root() / "docs" / "workshop.md").read_text()  # the instructor's checklist
    for preset in (small, guide):
        need = preset.capacity(30)
        assert f"{preset.name}` needs about {need['cpu']:g} cpu and {need['memory_gi']:g}Gi" in checklist


def test_settings_imports_only_the_core_layer() -> None:
    tree = ast.parse(Path(settings.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level}
    assert imported <= {None, "constants", "errors"}, imported  # `from . import config` has module None


def test_every_settings_variable_is_documented() -> None:
    assert {*settings.ENV.values(), settings.SETTINGS_FILE_ENV} <= set(config.ENV_VARS)


def test_a_bucket_setting_may_name_a_folder_of_a_shared_bucket() -> None:
    """Kubeflow 1.11 gives a namespace's key only folders of bucket mlpipeline (helpers.clients.storage)."""
    from helpers.core.errors import SetupError
    from helpers.core.settings import validate

    assert validate("bucket", "mlpipeline/private/team-a/") == "mlpipeline/private/team-a"
    assert validate("bucket", "triton") == "triton"
    for bad in ("mlpipeline/../x", "mlpipeline//x", "ML/private"):
        with pytest.raises(SetupError):
            validate("bucket", bad)


def test_path_based_status_urls_keep_their_path() -> None:
    from helpers.clients.target import session_cookie, url_path

    assert url_path({"status": {"url": "http://example.com/serving/mms/triton-mms"}}) == "/serving/mms/triton-mms"
    assert url_path({"status": {"url": "http://triton-mms.mms.example.com"}}) == ""
    assert session_cookie("302 redirect to /dex/auth?client_id=kubeflow-oidc-authservice") == "authservice_session"
    assert session_cookie("403 <!DOCTYPE html> Sign In") == "oauth2_proxy_kubeflow"


def test_the_cluster_target_asks_for_the_small_server_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMS_SETTINGS", "/nonexistent/settings.yaml")
    values, sources = settings.resolve_with_sources({"target": "cluster"}, own_namespace=NO_POD, user="alice")
    assert (values["preset"], sources["preset"]) == ("small", "default")
    assert settings.resolve_with_sources({"target": "cluster", "preset": "guide"}, own_namespace=NO_POD)[0][
        "preset"] == "guide"
    assert settings.resolve_with_sources({"target": "local"}, own_namespace=NO_POD)[0]["preset"] == "guide"
