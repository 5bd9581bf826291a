"""helpers.lesson.diagram: the architecture picture is written, and its names are the project's constants."""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers.core import constants
from helpers.core.constants import KFSERVING_GROUP, KSERVE_GROUP, api_group
from helpers.lesson import diagram, plots


def _texts(fig) -> str:
    return "\n".join(t.get_text() for t in fig.axes[0].texts)


@pytest.fixture()
def drawn(monkeypatch: pytest.MonkeyPatch) -> list:
    figures: list = []
    original = plots._finish

    def keep(fig, folder, filename):
        figures.append(fig)
        return original(fig, folder, filename)

    monkeypatch.setattr(plots, "_finish", keep)
    return figures


def test_the_picture_is_written_with_the_contracts_names(tmp_path: Path, drawn: list) -> None:
    path = diagram.architecture(api_group(KFSERVING_GROUP), "triton-mms", "mms", "triton", folder=tmp_path)
    assert path == tmp_path / "00_architecture.png" and path.stat().st_size > 20_000
    text = _texts(drawn[-1])
    for name in ("ConfigMap modelconfig-triton-mms-0", "key models.json:", "container agent",
                 "container kfserving-container", "HTTP :8080", "trainedmodels.serving.kubeflow.org",
                 "minio-service.kubeflow:9000", "istio-ingressgateway (istio-system)", "s3://triton/",
                 "/mnt/configs/models.json", "SUCCESS.<sha256 of spec>"):
        assert name in text, name
    diagram.architecture(api_group(KSERVE_GROUP), "srv", "team-b", "bucket-b", folder=tmp_path)
    text = _texts(drawn[-1])
    assert "container kserve-container" in text and "ConfigMap modelconfig-srv-0" in text
    assert "trainedmodels.serving.kserve.io" in text and "kfserving" not in text


def test_changing_a_constant_changes_the_picture(tmp_path: Path, drawn: list,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constants, "MODEL_CONFIG_FILE", "models-v2.json")
    monkeypatch.setattr(constants, "TRITON_HTTP_PORT", 8123)
    monkeypatch.setattr(constants, "AGENT_CONTAINER", "model-agent")
    monkeypatch.setattr(constants, "model_config_map_name", lambda isvc, shard=0: f"mc-{isvc}")
    diagram.architecture(api_group(KFSERVING_GROUP), "triton-mms", folder=tmp_path)
    text = _texts(drawn[-1])
    assert "key models-v2.json:" in text and "writes\nmodels-v2.json" in text and "models.json" not in text
    assert "HTTP :8123" in text and "to :8123" in text and ":8080" not in text
    assert "container model-agent" in text and "ConfigMap mc-triton-mms" in text


def test_every_arrow_joins_two_boxes() -> None:
    boxes, arrows = diagram.parts(api_group(KSERVE_GROUP), "s", "n", "b")
    keys = {box.key for box in boxes}
    assert len(keys) == len(boxes) and all(a.start in keys and a.end in keys for a in arrows)
    for box in boxes:  # inside the canvas
        x, y, w, h = box.xy
        assert 0 <= x and x + w <= 15 and 0 <= y and y + h <= 7.6, box.key
