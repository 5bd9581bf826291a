"""`make setup`'s installer (scripts/install-locked.py): which pins, split how, kept where."""
from __future__ import annotations

from pathlib import Path

import pytest

from support.packaging import install_locked

script = install_locked()


def test_pinned_reads_the_pins_and_skips_comments_and_options(tmp_path: Path) -> None:
    lock = tmp_path / "lock.txt"
    lock.write_text("# header\n\nabsl-py==2.5.1            # via keras\n-c other.txt\ntorch==2.13.0+cpu\n")
    assert script.pinned([lock]) == ["absl-py==2.5.1", "torch==2.13.0+cpu"]


def test_halves_balance_the_wheels_bytes_and_keep_every_pin(tmp_path: Path) -> None:
    sizes = {"tensorflow_cpu-2.21.0-cp311-none-any.whl": 270, "torch-2.13.0+cpu-cp311-none-any.whl": 190,
             "nvidia_pytriton-0.7.0-py3-none-any.whl": 55, "PyYAML-6.0.4-cp311-none-any.whl": 1,
             "ml_dtypes-0.5.4-cp311-none-any.whl": 2}
    for name, size in sizes.items():
        (tmp_path / name).write_bytes(b"x" * size)
    pins = ["tensorflow-cpu==2.21.0", "torch==2.13.0+cpu", "nvidia-pytriton==0.7.0", "pyyaml==6.0.4", "ml-dtypes==0.5.4"]
    first, second = script.halves(tmp_path, pins)
    assert sorted(first + second) == sorted(pins)
    assert "tensorflow-cpu==2.21.0" in first and "torch==2.13.0+cpu" in second  # the two biggest apart
    assert "nvidia-pytriton==0.7.0" in second


@pytest.mark.parametrize("name, spelled", [("tensorflow-cpu", "tensorflow_cpu"), ("PyYAML", "pyyaml"),
                                           ("zope.event", "zope_event"), ("ml_dtypes", "ml_dtypes")])
def test_names_are_compared_as_wheel_files_spell_them(name: str, spelled: str) -> None:
    assert script.normalized(name) == spelled


def test_a_changed_lock_gets_a_wheelhouse_of_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMS_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "pyproject.toml").write_text('[build-system]\nrequires = ["setuptools>=68"]\n')
    lock = tmp_path / "lock.txt"
    lock.write_text("torch==2.13.0\n")
    house, extra = script.wheelhouse([lock], tmp_path)
    assert house.parent == tmp_path / "cache" / "wheels" and extra == ["pip", "setuptools>=68"]
    assert script.wheelhouse([lock], tmp_path)[0] == house
    lock.write_text("torch==2.14.0\n")
    assert script.wheelhouse([lock], tmp_path)[0] != house


def test_the_build_requirement_is_read_without_tomllib_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text('[build-system]\nrequires = ["setuptools>=68", "wheel"]\n'
                                             'build-backend = "setuptools.build_meta"\n\n[project]\nname = "x"\n')
    assert script.build_requires(tmp_path) == ["setuptools>=68", "wheel"]
    monkeypatch.setitem(__import__("sys").modules, "tomllib", None)  # Python 3.10 has none
    assert script.build_requires(tmp_path) == ["setuptools>=68", "wheel"]


def test_the_cached_venv_has_a_key_of_its_own_that_follows_the_lock(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMS_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "pyproject.toml").write_text('[build-system]\nrequires = ["setuptools>=68"]\n')
    lock = tmp_path / "lock.txt"
    lock.write_text("torch==2.13.0\n")
    venv = script.template([lock], tmp_path)
    assert venv.parent == tmp_path / "cache" / "venvs"
    assert venv.name != script.wheelhouse([lock], tmp_path)[0].name  # the interpreter's place and the recipe too
    lock.write_text("torch==2.14.0\n")
    assert script.template([lock], tmp_path) != venv


def fake_cached_venv(root: Path, prefix: str) -> Path:
    """A cached venv as build_template leaves it: scripts naming the folder it was built in."""
    (root / "bin").mkdir(parents=True)
    (root / "lib" / "python3.11" / "site-packages" / "pkg").mkdir(parents=True)
    (root / "lib" / "python3.11" / "site-packages" / "pkg" / "__init__.py").write_text("X = 1\n")
    (root / "bin" / "jupyter").write_text(f"#!{prefix}/bin/python\nimport sys\n")
    (root / "bin" / "jupyter").chmod(0o755)
    (root / "bin" / "activate").write_text(f'VIRTUAL_ENV="{prefix}"\n')
    (root / "bin" / "ruff").write_bytes(b"\x7fELF" + prefix.encode())  # a binary: never rewritten
    (root / "bin" / "python").symlink_to("/usr/bin/python3")
    (root / "pyvenv.cfg").write_text(f"home = /usr/bin\ncommand = /usr/bin/python3 -m venv {prefix}\n")
    (root / ".prefix").write_text(prefix)
    (root / ".complete").touch()
    return root


def test_a_venv_is_linked_from_the_cache_and_its_scripts_name_their_own_place(tmp_path: Path) -> None:
    cached = fake_cached_venv(tmp_path / "cache" / "abc", "/cache/.filling-x1")
    venv = tmp_path / "checkout" / ".venv"
    (venv / "stale").mkdir(parents=True)  # an older .venv is replaced, not merged
    script.clone(cached, venv)

    module = venv / "lib" / "python3.11" / "site-packages" / "pkg" / "__init__.py"
    assert module.stat().st_ino == (cached / "lib" / "python3.11" / "site-packages" / "pkg" / "__init__.py").stat().st_ino
    assert not (venv / "stale").exists() and not (venv / ".prefix").exists() and not (venv / ".complete").exists()
    assert (venv / "bin" / "jupyter").read_text().startswith(f"#!{venv}/bin/python\n")
    assert (venv / "bin" / "jupyter").stat().st_mode & 0o111
    assert str(venv) in (venv / "bin" / "activate").read_text() and str(venv) in (venv / "pyvenv.cfg").read_text()
    assert (venv / "bin" / "python").is_symlink()
    # The cache keeps its own paths: a rewritten file is a new file, not the linked one changed.
    assert (cached / "bin" / "jupyter").read_text().startswith("#!/cache/.filling-x1/bin/python\n")
    assert (cached / "bin" / "ruff").read_bytes() == (venv / "bin" / "ruff").read_bytes()
    assert not list(venv.parent.glob(".*.partial"))


def test_only_the_current_entry_of_a_cache_folder_is_kept(tmp_path: Path) -> None:
    for name in ("old-lock", ".filling-abc", "current"):
        (tmp_path / name).mkdir()
    (tmp_path / ".lock").touch()
    script.keep_only(tmp_path, tmp_path / "current")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "current"]
