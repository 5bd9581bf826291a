"""One source, two languages: notebooks rendered from the Korean catalogue, helper messages through `_()`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog

from helpers.core import i18n, settings
from helpers.core.errors import SetupError
from helpers.tools import notebooks as copies
from helpers.tools import translations

PARAMETERS = 'language = None  # "en" or "ko"\ntarget = None\n'


def notebook(folder: Path, markdown: str = "## Upload to MinIO") -> Path:
    cells = [
        {"cell_type": "markdown", "id": "intro", "metadata": {}, "source": [markdown]},
        {"cell_type": "code", "id": "params", "metadata": {"tags": ["parameters"]}, "source": [PARAMETERS],
         "outputs": [], "execution_count": None},
        {"cell_type": "code", "id": "run", "metadata": {}, "source": ["print('kubectl get pods')"],
         "outputs": [], "execution_count": None},
    ]
    path = folder / "01_minio.ipynb"
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def translate(path: Path, english: str, korean: str, context: str = "intro") -> None:
    catalogue_path = translations.notebook_catalogue_path(path, "ko")
    catalogue = translations.read_catalogue(catalogue_path, "ko")
    catalogue.add(english, korean, context=context)
    translations.write_catalogue(catalogue, catalogue_path)


def test_rendering_swaps_markdown_keeps_code_and_sets_the_language(tmp_path: Path) -> None:
    path = notebook(tmp_path)
    translate(path, "## Upload to MinIO", "## MinIO에 올리기")
    english, korean = json.loads(path.read_text()), translations.render(path, "ko")
    assert "".join(korean["cells"][0]["source"]) == "## MinIO에 올리기"
    assert korean["cells"][2]["source"] == english["cells"][2]["source"]
    assert korean["cells"][1]["source"].splitlines()[0] == 'language = "ko"  # "en" or "ko"'  # its comment kept
    assert korean["cells"][1]["source"].splitlines()[1:] == PARAMETERS.splitlines()[1:]
    assert "MinIO에 올리기" in translations.render_text(path, "ko")  # readable, not \\u escapes
    assert translations.render(path, "en") == english


def test_an_untranslated_or_changed_cell_shows_english_and_is_listed_until_translated(tmp_path: Path,
                                                                                      monkeypatch) -> None:
    path = notebook(tmp_path)
    translate(path, "## Upload to MinIO", "## MinIO에 올리기")
    path = notebook(tmp_path, "## Upload the files to MinIO")  # the English changed since
    monkeypatch.setattr(translations, "shipped_notebooks", lambda: [path])
    monkeypatch.setattr(translations, "source_folders", lambda: {})
    translations.update("ko")
    entry = translations.read_catalogue(translations.notebook_catalogue_path(path, "ko"), "ko").get(
        "## Upload the files to MinIO", context="intro")
    assert entry.fuzzy and entry.string == "## MinIO에 올리기"  # the old translation kept for the translator
    assert "".join(translations.render(path, "ko")["cells"][0]["source"]) == "## Upload the files to MinIO"
    assert [(g.kind, g.message) for g in translations.gaps("ko")] == [("fuzzy", "## Upload the files to MinIO")]
    assert translations.main(["check", "--lang", "ko"]) == 1


def test_helper_messages_follow_the_chosen_language(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "locale" / "ko" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    catalogue = Catalog(locale="ko")
    catalogue.add("bucket {name} does not exist", "버킷 {name}이(가) 없습니다")
    translations.write_catalogue(catalogue, folder / "steps.objectstore.po")
    monkeypatch.setattr(i18n, "locale_dir", lambda: tmp_path / "locale")
    i18n.catalogue.cache_clear()
    try:
        i18n.set_language("ko")
        assert i18n._("bucket {name} does not exist").format(name="triton") == "버킷 triton이(가) 없습니다"
        assert i18n._("not in the catalogue") == "not in the catalogue"
        i18n.set_language("en")
        assert i18n._("bucket {name} does not exist") == "bucket {name} does not exist"
    finally:
        i18n.set_language(None)
        i18n.catalogue.cache_clear()


def test_the_language_is_a_setting_checked_like_the_others(monkeypatch) -> None:
    monkeypatch.setenv("MMS_LANGUAGE", "ko")
    monkeypatch.setenv("MMS_SETTINGS", "/nonexistent/settings.yaml")
    values, sources = settings.resolve_with_sources({})
    assert values["language"] == "ko" and sources["language"] == "MMS_LANGUAGE"
    with pytest.raises(SetupError) as caught:
        settings.validate("language", "fr")
    assert "'fr'" in caught.value.cause and "ko" in caught.value.fix
    with pytest.raises(ValueError):
        i18n.set_language("de")


def test_a_korean_copy_keeps_a_learners_edited_notebook(tmp_path: Path, monkeypatch) -> None:
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    path = notebook(shipped)
    translate(path, "## Upload to MinIO", "## MinIO에 올리기")
    monkeypatch.setattr(copies, "shipped", lambda: [path])
    monkeypatch.setattr(translations, "shipped_notebooks", lambda: [path])
    dest = tmp_path / "mine"
    assert [(c.name, c.action) for c in copies.copy(dest, lang="ko")] == [(path.name, "copied"),
                                                                        ("START_HERE.md", "copied")]
    assert "MinIO에 올리기" in (dest / path.name).read_text()
    assert (dest / "START_HERE.md").read_text() == copies.start_page("ko").read_text()
    assert [c.action for c in copies.copy(dest, lang="ko")] == ["unchanged", "unchanged"]
    (dest / path.name).write_text((dest / path.name).read_text().replace("올리기", "올리기!"))
    assert [c.action for c in copies.copy(dest, lang="ko")] == ["new-version", "unchanged"]
    assert "올리기!" in (dest / path.name).read_text()


def test_every_notebook_cell_and_helper_message_has_its_korean() -> None:
    """Nothing a learner reads falls back to English: `python -m helpers.tools.translations check --lang ko`."""
    missing = [f"{g.catalogue.name}: {g.kind}: {g.message.strip().splitlines()[0][:80]}"
               for g in translations.gaps("ko")]
    assert missing == [], "run `python -m helpers.tools.translations update --lang ko`, translate:\n" + "\n".join(
        missing)
