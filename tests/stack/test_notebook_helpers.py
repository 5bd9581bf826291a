"""The helpers notebooks call that need no cluster: the opening and Context, widgets, masking,
the guide's equivalents, sample images and their preprocessing, predictions and plots."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from helpers.clients import manifests
from helpers.core import settings
from helpers.core.config import project_root
from helpers.core.errors import SetupError
from helpers.lesson import notebook, plots
from helpers.lesson.widgets import settings_widgets
from helpers.steps.models import images, predict
from helpers.steps.models.standins import CIFAR10_CLASSES

SETTINGS = {"target": "local", "identity": "admin", "namespace": "team-a", "server_name": "tri", "bucket": "models-bkt",
            "api_group": "serving.kserve.io", "preset": "small", "language": "en"}
# A notebook's parameters cell as it is committed: every setting left to MMS_*, the settings file or the default.
BLANK_CELL = {"target": None, "identity": "admin", "namespace": "", "server_name": "", "bucket": "", "api_group": "",
              "preset": "", "results_path": None, "interactive": None}


def make_ctx(tmp_path: Path, **params) -> notebook.Context:
    return notebook.start("99_test", "테스트", "a test", results_path=str(tmp_path / "results" / "99.json"),
                          interactive=False, check=False, **{**SETTINGS, **params})


# --- opening and settings ------------------------------------------------------------------


def test_start_prints_the_opening_and_keeps_settings(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ctx = make_ctx(tmp_path, top_k=3)
    out = capsys.readouterr().out
    assert "99_test: a test" in out and 'guide section: "테스트"' in out and "target: local" in out
    assert "versions: python" in out and "kubernetes" in out
    assert ctx.settings() == SETTINGS and ctx.param("top_k") == 3 and ctx.param("missing", 7) == 7
    assert ctx.group.s3_endpoint == "serving.kserve.io/s3-endpoint"
    assert ctx.output_dir == tmp_path and ctx.plots_dir == tmp_path / "plots"


@pytest.mark.parametrize("key,value,words", [
    ("namespace", "Bad_NS", "lower-case"), ("server_name", "1triton", "starting with a letter"),
    ("bucket", "ab", "3-63"), ("api_group", "serving.example.com", "serving.kubeflow.org"),
    ("target", "laptop", "'local' or 'cluster'"), ("preset", "huge", "not one of guide, small")])
def test_bad_settings_fail_before_anything_runs(tmp_path: Path, key: str, value: str, words: str) -> None:
    with pytest.raises(SetupError) as err:
        make_ctx(tmp_path, **{key: value})
    assert words in str(err.value)


def blank_start(tmp_path: Path, **cell) -> notebook.Context:
    """`start` as a committed notebook calls it: `settings=locals()` of an untouched parameters cell."""
    return notebook.start("99_test", "x", settings={**BLANK_CELL, **cell,
                                                    "results_path": str(tmp_path / "results" / "99.json")},
                          interactive=False, check=False)


def test_start_reads_the_settings_file_and_says_where_each_setting_came_from(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    path = settings.save({"namespace": "team-f", "bucket": "file-bkt", "preset": "small"}, tmp_path / "s.yaml")
    monkeypatch.setenv("MMS_SETTINGS", str(path))
    monkeypatch.setenv("MMS_BUCKET", "env-bkt")
    monkeypatch.setenv("MMS_API_GROUP", "serving.kserve.io")  # else start asks the cluster
    ctx = blank_start(tmp_path, server_name="param-srv")
    assert ctx.settings() == {"target": "local", "identity": "admin", "namespace": "team-f", "server_name": "param-srv",
                              "bucket": "env-bkt", "api_group": "serving.kserve.io", "preset": "small",
                              "language": "en"}
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("settings: "))
    assert line == ("settings: target=local (default), namespace=team-f (settings file), server_name=param-srv "
                    "(parameter), bucket=env-bkt (MMS_BUCKET), api_group=serving.kserve.io (MMS_API_GROUP), "
                    "preset=small (settings file), language=en (default)")
    # the preset reaches the manifests: the small server and model memory
    values = manifests.values_for(ctx, model_name="cifar10")
    server = manifests.render("multi_model_triton_server", **values)[0]["spec"]["predictor"]["triton"]["resources"]
    assert server == {"limits": {"cpu": "1", "memory": "2Gi"}, "requests": {"cpu": "1", "memory": "2Gi"}}
    assert manifests.render("trained_model1", **values)[0]["spec"]["model"]["memory"] == "512Mi"
    assert ctx.preset.summary().startswith("preset small: the server asks for 1 cpu and 2Gi, each model for 512Mi")
    ctx.save()
    assert json.loads(ctx.results_path.read_text())["settings"]["preset"] == "small"
    # with nothing set anywhere: the guide's values, and its 16Gi server
    monkeypatch.setenv("MMS_SETTINGS", str(tmp_path / "none.yaml"))
    monkeypatch.delenv("MMS_BUCKET")
    ctx = blank_start(tmp_path)
    assert {k: ctx.setting(k) for k in ("namespace", "server_name", "bucket", "preset")} == {
        "namespace": "mms", "server_name": "triton-mms", "bucket": "triton", "preset": "guide"}
    assert manifests.values_for(ctx)["server_memory"] == "16Gi"


def test_a_bad_settings_file_stops_start_before_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("bucket: Not A Bucket\n")
    monkeypatch.setenv("MMS_SETTINGS", str(path))
    with pytest.raises(SetupError) as err:
        blank_start(tmp_path, api_group="serving.kserve.io")
    assert str(path) in err.value.cause and "3-63" in err.value.fix
    assert not (tmp_path / "results").exists()


def test_in_a_notebook_pod_the_target_is_cluster_and_the_namespace_the_pods_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from helpers.clients.target import InCluster

    (tmp_path / "namespace").write_text("kubeflow-user-a\n")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.delenv("MMS_TARGET", raising=False)
    from helpers.clients import target

    def in_pod(folder: Path) -> None:  # where the notebook runs (notebook) and whose namespace it is (target)
        for module in (notebook, target):
            monkeypatch.setattr(module, "select", lambda name=None: InCluster(folder))

    in_pod(tmp_path)
    ctx = blank_start(tmp_path, api_group="serving.kserve.io")
    assert ctx.target == "cluster" and ctx.namespace == "kubeflow-user-a"
    assert "namespace=kubeflow-user-a (per-learner default)" in capsys.readouterr().out
    # outside a pod, on a cluster: mms-<user>, so learners sharing a cluster do not share `mms`
    in_pod(tmp_path / "not-a-pod")
    monkeypatch.setenv("LOGNAME", "Jane.Doe")
    assert blank_start(tmp_path, api_group="serving.kserve.io").namespace == "mms-jane-doe"


def test_save_writes_json_with_parent_folders(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    ctx.save(answer=42, plots=[tmp_path / "a.png"])
    saved = json.loads((tmp_path / "results" / "99.json").read_text())
    assert saved["answer"] == 42 and saved["plots"] == [str(tmp_path / "a.png")]
    assert saved["settings"] == SETTINGS and saved["guide_section"] == "테스트"
    assert set(saved["timings"]) == {"notebook_s"}


def test_widgets_start_from_the_parameters_and_drive_the_context(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    ctx.widgets = settings_widgets(ctx.settings())
    assert ctx.widgets.values() == SETTINGS
    ctx.widgets.set(namespace="other-ns", api_group="serving.kubeflow.org", bucket="  spaced  ")
    assert ctx.namespace == "other-ns" and ctx.api_group == "serving.kubeflow.org" and ctx.bucket == "spaced"
    ctx.widgets.set(namespace="Not Valid")
    with pytest.raises(SetupError):
        _ = ctx.namespace


def test_widgets_save_for_every_notebook_and_the_next_one_reads_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config" / "settings.yaml"
    monkeypatch.setenv("MMS_SETTINGS", str(path))
    widgets = settings_widgets({**SETTINGS, "preset": "guide"})
    assert widgets.widgets["preset"].options == ("guide", "small") and widgets.widgets["preset"].value == "guide"
    widgets.set(namespace="team-c", preset="small", identity="learner")
    widgets.save_button.click()
    # identity is not a shared setting
    assert settings.load() == {"target": "local", "namespace": "team-c", "server_name": "tri", "bucket": "models-bkt",
                               "api_group": "serving.kserve.io", "preset": "small", "language": "en"}
    assert f"saved to <code>{path}</code>" in widgets.saved.value
    following = blank_start(tmp_path)  # the next notebook, its parameters cell untouched
    assert (following.namespace, following.server_name, following.preset.name) == ("team-c", "tri", "small")


def test_in_korean_the_opening_and_the_widgets_speak_korean(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """language=ko: the opening's words, the settings widgets' labels and the error display's heading are
    Korean; setting names, values and paths stay as they are."""
    from helpers.core import i18n

    monkeypatch.setenv("MMS_SETTINGS", str(tmp_path / "settings.yaml"))
    try:
        ctx = make_ctx(tmp_path, language="ko")
        out = capsys.readouterr().out
        assert '가이드 절: "테스트"' in out and "대상: 로컬" in out and "버전: python" in out
        assert next(x for x in out.splitlines() if x.startswith("설정: ")).startswith("설정: target=local")
        assert ctx.settings()["language"] == "ko"
        widgets = settings_widgets(SETTINGS)
        assert widgets.save_button.description == "모든 노트북에 저장"
        assert sorted(w.description for w in widgets.widgets.values()) == sorted(SETTINGS)  # the settings' own names
        widgets.set(namespace="Bad_NS")
        widgets.save_button.click()
        assert "저장하지 않았습니다: " in widgets.saved.value and "<b>해결 방법:</b>" in widgets.saved.value
        lines = notebook._error_lines(SetupError("bucket x does not exist", "create it"))
        assert lines[1].endswith("해결 방법:\x1b[0m create it")
    finally:
        i18n.set_language(None)


def test_widgets_save_nothing_for_a_bad_value_and_say_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import html

    path = tmp_path / "settings.yaml"
    monkeypatch.setenv("MMS_SETTINGS", str(path))
    widgets = settings_widgets(SETTINGS)
    widgets.save_button.click()
    before = path.read_text()
    widgets.set(bucket="models-other", namespace="Bad_NS")
    widgets.save_button.click()
    assert path.read_text() == before and settings.load()["bucket"] == "models-bkt"
    shown = html.unescape(widgets.saved.value)
    assert "not saved: namespace 'Bad_NS' is not a valid Kubernetes name" in shown and "<b>fix:</b> use lower-case" in shown
    assert "saved to" not in shown
    widgets.set(namespace="team-d")
    widgets.save_button.click()
    assert settings.load()["namespace"] == "team-d" and "saved to" in widgets.saved.value


def test_interactive_none_means_no_widgets_outside_jupyter(tmp_path: Path) -> None:
    ctx = notebook.start("99_test", "x", check=False, interactive=None,
                         results_path=str(tmp_path / "r.json"), **SETTINGS)
    assert ctx.interactive is False and ctx.widgets is None
    assert ctx.output_dir == tmp_path


def test_local_stack_down_says_how_to_start_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMS_STATE_DIR", str(tmp_path / "no-stack"))
    with pytest.raises(SetupError) as err:
        notebook.start("99_test", "x", results_path=str(tmp_path / "r.json"), interactive=False, **SETTINGS)
    assert "python -m helpers.local up" in err.value.fix and "not running" in err.value.cause


def test_mask_never_shows_any_character() -> None:
    for secret in ("minio123", "Q", "x" * 40):
        masked = notebook.mask(secret)
        assert secret not in masked and str(len(secret)) in masked
    assert notebook.mask("") == "<empty>"


def test_shown_commands_say_truthfully_where_they_come_from(capsys: pytest.CaptureFixture) -> None:
    from helpers.core.show import show_adapted, show_guide, show_not_in_guide

    show_guide("# comment\nkubectl apply -f x.yaml\nwget -O f \\\n     https://example.com/f")
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "# the guide's commands, as the guide writes them:"
    assert out[1:] == ["# comment", "$ kubectl apply -f x.yaml", "$ wget -O f \\", "       https://example.com/f"]
    show_adapted("kubectl get pods -n mms", "-n added: your namespace")
    show_not_in_guide("kubectl get pods -n mms", "see the server's containers")
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "# the guide's commands, adapted (-n added: your namespace):"
    assert out[2] == "# not in the guide: see the server's containers"


def test_long_commands_wrap_between_options_never_inside_one(capsys: pytest.CaptureFixture) -> None:
    notebook.show_equivalent('curl -v -X POST -H "Host: ${SERVICE_HOSTNAME}" -H "Cookie: ${MMS_INGRESS_COOKIE}" '
                             "http://${CLUSTER_IP}/v2/models/${MODEL_NAME}/infer -d @./${MODEL_NAME}.json\n"
                             "cd /a/rather/long/folder/name # where this notebook wrote the request file", width=60)
    out = capsys.readouterr().out.splitlines()[1:]
    assert [line.startswith("$ ") for line in out].count(True) == 2  # two commands, continued with "\\"
    assert any(line.strip() == "-d @./${MODEL_NAME}.json" for line in out)  # the option with its file
    assert any(line.strip().startswith('-H "Cookie: ${MMS_INGRESS_COOKIE}"') for line in out)
    assert out[-1].strip() == "# where this notebook wrote the request file"  # a comment is never split
    assert subprocess.run(["bash", "-n"], input="\n".join(line.removeprefix("$ ") for line in out),
                          text=True).returncode == 0


# --- images, predictions, plots ------------------------------------------------------------


def test_sample_images_ship_with_scikit_image() -> None:
    photos = images.sample_images(images.SAMPLES)
    assert list(images.sample_images()) == list(images.DEFAULT_SAMPLES) == list(images.CIFAR10_SAMPLES)
    assert all(p.dtype == np.uint8 and p.ndim == 3 and p.shape[2] == 3 for p in photos.values())
    assert photos["horse"].max() == 255 and photos["horse"].min() == 0  # the silhouette, black on white
    with pytest.raises(ValueError):
        images.sample_images(["unicorn"])


def test_cifar10_photos_show_cifar10_classes_and_inceptions_have_imagenet_labels() -> None:
    labels = set((project_root() / "data" / "models" / "inception_graphdef" / "inception_labels.txt")
                 .read_text().splitlines())
    for name in images.CIFAR10_SAMPLES:
        assert images.SAMPLES[name].cifar10 in CIFAR10_CLASSES, name
    for name in images.INCEPTION_SAMPLES:
        assert set(images.SAMPLES[name].imagenet.split(", ")) <= labels, name
    described = images.describe(images.CIFAR10_SAMPLES).splitlines()
    assert [line.split()[0] for line in described] == list(images.CIFAR10_SAMPLES)
    assert described[2].endswith("expected: airplane") and "astronaut" in described[2]
    assert images.describe(["coffee"]).endswith("expected: none of the ten classes")
    assert images.describe(["shuttle"], "inception").endswith("expected: space shuttle")


def test_preprocessing_matches_each_models_input() -> None:
    photos = list(images.sample_images(["cat", "astronaut"]).values())
    cifar = images.cifar10_batch(photos)
    assert cifar.shape == (2, 3, 32, 32) and cifar.dtype == np.float32
    assert -1.0 <= cifar.min() < 0 < cifar.max() <= 1.0
    inception = images.inception_batch(photos)
    assert inception.shape == (2, 299, 299, 3) and inception.dtype == np.float32
    assert -1.0 <= inception.min() and inception.max() <= 1.0


def test_softmax_and_top_k() -> None:
    logits = np.array([0.1, 3.0, -1.0, 2.0, 0, 0, 0, 0, 0, 0], dtype=np.float32)
    probs = predict.softmax(logits)
    assert probs.sum() == pytest.approx(1.0)
    top = predict.top_k(probs, CIFAR10_CLASSES, 2)
    assert [label for label, _ in top] == ["automobile", "cat"] and top[0][1] > top[1][1]
    assert predict.from_classification([[(0.9, 3, "tabby"), (0.1, 7, "")]]) == [[("tabby", 0.9), ("class 7", 0.1)]]
    assert predict.describe_outputs({"OUTPUT__0": np.zeros((1, 10), np.float32)}) == [
        {"name": "OUTPUT__0", "datatype": "FP32", "shape": [1, 10]}]


def _drawn(monkeypatch: pytest.MonkeyPatch) -> list:
    """The figures the plot functions draw (kept for inspection after they are saved and closed)."""
    figures: list = []
    original = plots._finish

    def keep(fig, folder, filename):
        figures.append(fig)
        return original(fig, folder, filename)

    monkeypatch.setattr(plots, "_finish", keep)
    return figures


def _png_size(path: Path) -> tuple[int, int]:
    import matplotlib.image

    return matplotlib.image.imread(path).shape[:2]


@pytest.mark.parametrize("standin", [True, False])
def test_prediction_plot_shows_photos_labels_scores_and_the_stand_in_banner(
        tmp_path: Path, standin: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real model's plot: each photo beside its top classes, best on top. A stand-in's: the photos
    under a red banner, and no class or score at all (its made-up answers are never drawn as classes)."""
    figures = _drawn(monkeypatch)
    photos = images.sample_images(["cat", "coffee", "rocket"])
    top = [[("German short-haired pointer, a long label", 0.6), ("tabby", 0.3), ("lynx", 0.1)]] * 3
    path = plots.predictions(photos, top, "title", standin, f"p{standin}.png", folder=tmp_path)
    assert path == tmp_path / f"p{standin}.png" and min(_png_size(path)) > 100
    fig = figures[-1]
    banner = [t for t in fig.texts if t.get_text() == plots.standin_note()]
    assert bool(banner) == standin
    assert fig.get_suptitle() == ("title: the photos sent (stand-in model)" if standin else "title: top-3 classes")
    photo_axes = [ax for ax in fig.axes if ax.get_images()]
    bar_axes = [ax for ax in fig.axes if ax.patches]
    assert [ax.get_title() for ax in photo_axes] == ["cat", "coffee", "rocket"]
    if standin:
        assert banner[0].get_color() == "#cf222e"
        assert bar_axes == [] and not any("tabby" in t.get_text() or "%" in t.get_text()
                                          for ax in fig.axes for t in ax.texts + ax.get_yticklabels())
        return
    for ax in bar_axes:
        assert ax.get_xlabel() == "probability"
        labels = [t.get_text() for t in ax.get_yticklabels()]
        assert labels[-1] == "German short-haired\npointer, a long label"  # best on top, wrapped, not cut
        assert [round(bar.get_width(), 2) for bar in ax.patches] == [0.1, 0.3, 0.6]
        assert "60.0%" in [t.get_text() for t in ax.texts]
    logits = plots.predictions(photos, [[("cat", 2.5), ("dog", -1.0)]] * 3, "logits", standin, "l.png",
                               score_name="logit", folder=tmp_path)
    assert min(_png_size(logits)) > 100
    assert {ax.get_xlabel() for ax in figures[-1].axes if ax.patches} == {"logit"}
    assert "-1.00" in [t.get_text() for ax in figures[-1].axes for t in ax.texts]


def test_handoff_diagram_labels_each_arrow_with_each_models_measured_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from helpers import diagram
    from helpers.core.constants import api_group

    figures = _drawn(monkeypatch)
    rows = [{"model": "cifar10", "start": 100.0, "download_s": 0.2, "load_s": 1.1, "downloaded": True, "failed": None},
            {"model": "inception", "start": 200.0, "download_s": 0.5, "load_s": None, "downloaded": False,
             "failed": "bad config"}]
    labels = diagram.handoff_labels(rows, {"cifar10": 99.75})
    assert labels == {"seen": "cifar10: ≈ 0.25 s\ninception: —",
                      "download": "cifar10: 0.20 s\ninception: files there already",
                      "load": "cifar10: 0.90 s\ninception: FAILED: bad config",
                      "served": "cifar10: 1.10 s\ninception: —"}
    path = diagram.handoff(rows, api_group("serving.kubeflow.org"), "triton-mms", "triton", {"cifar10": 99.75},
                           "h.png", folder=tmp_path)
    assert path == tmp_path / "h.png" and min(_png_size(path)) > 100
    ax = figures[-1].axes[0]
    texts = [t.get_text() for t in ax.texts]
    for box in ("controller", "ConfigMap", "agent", "S3 (MinIO)", "Triton"):
        assert box in texts
    assert "modelconfig-triton-mms-0\nmodels.json" in texts and "server pod, container\nkfserving-container" in texts
    assert any(labels["download"] in t for t in texts) and any(labels["load"] in t for t in texts)
    assert "cifar10: 1.10 s, inception: —" in ax.get_title()


def test_every_environment_variable_is_documented_in_the_readme() -> None:
    from helpers.core.config import ENV_VARS, project_root

    readme = (project_root() / "README.md").read_text()
    assert [name for name in ENV_VARS if f"`{name}`" not in readme] == []


@pytest.mark.parametrize("status, reachable", [(200, True), (403, False), (404, False), (302, False), (503, False)])
def test_only_tritons_own_answer_counts_as_reachable(status: int, reachable: bool) -> None:
    """Istio's 403, a gateway's 404 and a login redirect come from in front of Triton (target.answers)."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from helpers.clients import target

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            if status == 302:
                self.send_header("Location", "/dex/auth")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert target.answers(f"http://127.0.0.1:{server.server_port}", {"Host": "x.example.com"}) is reachable
    finally:
        server.shutdown()
        server.server_close()


def test_every_environment_variable_the_code_reads_is_listed() -> None:
    """Every `os.environ[...]`, `os.environ.get(...)`, `env_flag(...)` and `env_port(...)` name in
    helpers/ is in ENV_VARS (hence, by the test above, in the README)."""
    import re

    from helpers.core.config import ENV_VARS, project_root

    pattern = re.compile(r"""(?:environ\.get\(|environ\[|getenv\(|env_flag\(|env_port\(|_env_path\()"""
                         r"""\s*["']([A-Z][A-Z0-9_]+)["']""")
    constants = re.compile(r"""^([A-Z_]+_ENV)\s*=\s*["']([A-Z][A-Z0-9_]+)["']""", re.M)
    read = set()
    for path in (project_root() / "helpers").rglob("*.py"):
        text = path.read_text()
        read |= set(pattern.findall(text)) | {value for _, value in constants.findall(text)}
    # Set for child processes or by the platform, not settings a user chooses.
    not_settings = {"HOME", "PATH", "XDG_STATE_HOME", "XDG_CACHE_HOME", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                    "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_DEFAULT_REGION", "S3_USE_HTTPS", "S3_VERIFY_SSL",
                    "S3_USER_VIRTUAL_BUCKET", "KUBERNETES_SERVICE_HOST", "JUPYTER_CONFIG_DIR", "PYTHONPATH",
                    "MMS_OUTBOUND_REFUSED_FOR"}  # the controller tells a racing pod's agent how long its proxy is away
    assert sorted(read - set(ENV_VARS) - not_settings) == []


def test_every_notebook_parameter_is_explained_where_it_is_set() -> None:
    """Each line of a notebook's `parameters` cell says what the value means (a comment)."""
    from helpers.core.config import project_root

    for path in sorted((project_root() / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        params = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(params) == 1, path.name
        for line in "".join(params[0]["source"]).splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                assert "#" in line, f"{path.name}: {line}"
