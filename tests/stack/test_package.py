"""The package as a learner installs it: package data in the wheel, `helpers.tools.notebooks copy`, the
JUnit report of a regression run, and what an offline stand-in says when torch is missing.

No stack needed: the wheel is built from this tree and unpacked into a folder outside it.
"""
from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

from helpers.core import resources
from helpers.core.config import project_root
from helpers.core.errors import SetupError
from helpers.steps.models import model_sources
from helpers.tools import notebooks, walkthrough
from support.packaging import build_wheel

SHIPPED = ["00_cluster_prep.ipynb", "01_minio.ipynb", "02_server.ipynb", "03_cifar10.ipynb", "04_inception.ipynb",
           "05_lifecycle.ipynb", "06_troubleshooting.ipynb", "07_one_server_many_models.ipynb", "99_cleanup.ipynb"]
COPIED = [*SHIPPED, "START_HERE.md"]  # the notebooks and the start page in the chosen language


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_the_wheel_holds_manifests_data_and_notebooks(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("manifests", "data", "notebooks"):
        in_tree = {p.relative_to(project_root()).as_posix() for p in (project_root() / folder).rglob("*")
                   if p.is_file() and ".ipynb_checkpoints" not in p.parts}
        assert in_tree, folder
        missing = sorted(rel for rel in in_tree if f"helpers/_files/{rel}" not in names)
        assert missing == [], f"not in the wheel: {missing}"
    assert "helpers/core/resources.py" in names and "helpers/tools/notebooks.py" in names
    catalogues = {p.relative_to(project_root()).as_posix() for p in (project_root() / "helpers" / "locale").rglob("*.po")}
    assert catalogues and sorted(catalogues - names) == []  # helper messages in every language
    assert {"helpers/_files/notebooks/START_HERE.md", "helpers/_files/notebooks/START_HERE.ko.md"} <= names


def test_the_unpacked_wheel_renders_manifests_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    """Unpacked into a folder of its own, run from another folder: it reads its own package data."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import json, helpers, helpers.clients.manifests as m, helpers.core.resources as r, helpers.tools.notebooks as n;"
            "docs = m.render('profile', namespace='learner');"
            "print(json.dumps({'file': helpers.__file__, 'manifests': str(r.manifest_dir()),"
            " 'profile': docs[0]['metadata']['name'], 'kind': docs[0]['kind'],"
            " 'notebooks': [p.name for p in n.shipped()], 'labels': r.data_path('models', 'inception_graphdef',"
            " 'inception_labels.txt').is_file(), 'checkout': r.is_checkout()}))")
    run = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); {code}"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    found = json.loads(run.stdout)
    assert found["file"].startswith(str(site)), found
    assert found["manifests"] == str(site / "helpers" / "_files" / "manifests")
    assert (found["kind"], found["profile"]) == ("Profile", "learner")
    assert found["notebooks"] == SHIPPED
    assert found["labels"] is True and found["checkout"] is False


def test_in_the_checkout_the_top_level_folders_are_read() -> None:
    assert resources.manifest_dir() == project_root() / "manifests"
    assert resources.notebooks_dir() == project_root() / "notebooks"
    assert resources.data_path("guide_commands.md").is_file()
    with pytest.raises(ValueError, match="no project folder"):
        resources.folder("scripts")


def test_copy_never_overwrites_an_edited_notebook_without_force(tmp_path: Path, capsys) -> None:
    dest = tmp_path / "mms-notebooks"
    assert notebooks.main(["copy", str(dest)]) == 0
    first = capsys.readouterr().out
    assert sorted(p.name for p in dest.iterdir()) == sorted(COPIED)
    assert first.count(" copied") == len(COPIED) and "open 00_cluster_prep.ipynb" in first and "START_HERE.md" in first
    assert (dest / "START_HERE.md").read_bytes() == (resources.notebooks_dir() / "START_HERE.md").read_bytes()

    assert [c.action for c in notebooks.copy(dest)] == ["unchanged"] * len(COPIED)

    edited = dest / "02_server.ipynb"
    edited.write_text(edited.read_text().replace('"cells": [', '"cells": [{"cell_type": "markdown", "id": "mine", '
                                                 '"metadata": {}, "source": ["my note"]}, ', 1))
    mine = edited.read_bytes()
    assert notebooks.main(["copy", str(dest)]) == 0
    second = capsys.readouterr().out
    assert "02_server.ipynb" in second and "02_server.new.ipynb" in second and "is kept" in second
    assert edited.read_bytes() == mine  # the learner's copy is untouched
    assert (dest / "02_server.new.ipynb").read_bytes() == (resources.notebooks_dir() / "02_server.ipynb").read_bytes()

    done = {c.name: c.action for c in notebooks.copy(dest, force=True)}
    assert done["02_server.ipynb"] == "replaced" and done["00_cluster_prep.ipynb"] == "unchanged"
    assert (dest / "02_server.ipynb.bak").read_bytes() == mine
    assert edited.read_bytes() == (resources.notebooks_dir() / "02_server.ipynb").read_bytes()


def test_a_korean_copy_brings_the_korean_start_page(tmp_path: Path, capsys) -> None:
    dest = tmp_path / "ko"
    assert notebooks.main(["copy", str(dest), "--lang", "ko"]) == 0
    korean = (resources.notebooks_dir() / "START_HERE.ko.md").read_text(encoding="utf-8")
    assert (dest / "START_HERE.md").read_text(encoding="utf-8") == korean
    assert "Multi Model Serving을 위한 세팅" in korean and "00_cluster_prep" in korean
    assert notebooks.start_page("en").name == "START_HERE.md" and notebooks.start_page("ko").name == "START_HERE.ko.md"
    capsys.readouterr()
    assert notebooks.main(["copy", str(dest), "--lang", "en"]) == 0  # the English page next to the learner's
    assert (dest / "START_HERE.new.md").read_text(encoding="utf-8") == notebooks.start_page("en").read_text(
        encoding="utf-8")
    assert (dest / "START_HERE.md").read_text(encoding="utf-8") == korean


def test_copy_refuses_a_file_as_its_folder(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(SetupError, match="is not a folder"):
        notebooks.copy(tmp_path / "f")


def test_junit_report_of_a_failed_run(tmp_path: Path) -> None:
    ok_results = tmp_path / "00.json"
    ok_results.write_text(json.dumps({"notebook": "00_cluster_prep", "api_reachable": True}))
    runs = [walkthrough.Run("00_cluster_prep", True, 1.5, tmp_path / "00.ipynb", ok_results),
            walkthrough.Run("01_minio", False, 2.25, tmp_path / "01.ipynb", tmp_path / "missing.json",
                            "SetupError: bucket triton is not reachable\n    fix: check MinIO",
                            "SetupError: bucket triton is not reachable\n  fix: check MinIO\nTraceback ...")]
    text = walkthrough.junit_xml(runs, ["00_cluster_prep", "01_minio", "02_server"], {"target": "cluster"})
    suite = ET.fromstring(text.split("?>", 1)[1])
    assert suite.tag == "testsuite"
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert list(cases) == ["00_cluster_prep", "01_minio", "02_server"]
    assert cases["00_cluster_prep"].find("failure") is None
    assert json.loads(cases["00_cluster_prep"].find("system-out").text)["api_reachable"] is True
    failure = cases["01_minio"].find("failure")
    assert failure.get("message").startswith("SetupError: bucket triton is not reachable")
    assert "fix: check MinIO" in failure.get("message") and "Traceback" in failure.text
    assert cases["02_server"].find("skipped") is not None
    assert cases["01_minio"].get("classname") == "walkthrough.cluster"
    assert suite.find("properties/property").attrib == {"name": "target", "value": "cluster"}


def test_a_standin_without_torch_says_what_to_install(tmp_path: Path, monkeypatch) -> None:
    """Offline, nothing cached and no torch: not an ImportError, but the command and the cache folder."""
    real = model_sources.importlib.util.find_spec
    monkeypatch.setattr(model_sources.importlib.util, "find_spec",
                        lambda name, *a: None if name in ("torch", "tensorflow") else real(name, *a))
    for name, needs in (("cifar10", "pip install --user torch --index-url https://download.pytorch.org/whl/cpu"),
                        ("inception", "pip install --user tensorflow-cpu")):
        source = model_sources.SOURCES[name]
        with pytest.raises(SetupError) as caught:
            model_sources.fetch_source(source, offline=True, cache=tmp_path, say=lambda _: None)
        assert needs in caught.value.fix
        assert str(tmp_path / source.folder) in caught.value.fix
        assert all(rel in caught.value.fix for rel in source.required)
        assert not (tmp_path / "standin" / source.folder).exists()
