"""The learner's language, English or Korean, and the catalogues that translate what helpers say.

Messages are written in English in the code, marked with `_()` (gettext's convention), and looked
up in the Korean catalogues `helpers/locale/ko/LC_MESSAGES/*.po`: one `.po` file per module
(`core.settings.po`, `steps.troubleshoot.doctor.po`, ...), all read together. Babel reads them as they
are, so there is no compiled `.mo` to keep in step. A message missing from the catalogue is
shown in English; `python -m helpers.tools.translations check` lists those.

Placeholders are named and filled after the lookup, so the catalogue holds one entry a message:
`_("namespace {name} is not valid").format(name=name)`. Commands, YAML, field names and log
lines are never translated.

The language is a setting like the namespace (`language`, `MMS_LANGUAGE`, the settings file;
`helpers.core.settings`); `notebook.start` and the command-line tools call `set_language` with it.
Until then it is `MMS_LANGUAGE`, else English.

Core layer: imports only the standard library (and Babel, when a catalogue is read).
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Optional

LANGUAGES = {"en": "English", "ko": "한국어"}
SOURCE_LANGUAGE = "en"
ENV = "MMS_LANGUAGE"

_chosen: Optional[str] = None


def locale_dir() -> Path:
    """`helpers/locale`: the catalogues of helper messages, one folder per language."""
    return Path(__file__).resolve().parent.parent / "locale"


def check(code: Optional[str]) -> str:
    """`code` as a known language code; ValueError names the choices."""
    text = (code or "").strip().lower()
    if text not in LANGUAGES:
        raise ValueError(f"language {code!r} is not one of {', '.join(LANGUAGES)}")
    return text


def language() -> str:
    """The language messages are shown in: the last `set_language`, else MMS_LANGUAGE, else English."""
    if _chosen:
        return _chosen
    try:
        return check(os.environ.get(ENV) or SOURCE_LANGUAGE)
    except ValueError:
        return SOURCE_LANGUAGE  # settings.validate reports the bad variable with its fix


def set_language(code: Optional[str]) -> str:
    """Show messages in `code` from now on (None: back to MMS_LANGUAGE or English); returns it."""
    global _chosen
    _chosen = check(code) if code else None
    return language()


@functools.lru_cache(maxsize=None)
def catalogue(code: str, folder: Optional[Path] = None) -> dict[str, str]:
    """Every translated message of one language, English -> translation (fuzzy and empty entries skipped)."""
    if code == SOURCE_LANGUAGE:
        return {}
    from babel.messages.pofile import read_po

    found: dict[str, str] = {}
    for path in sorted((folder or locale_dir()).joinpath(code, "LC_MESSAGES").glob("*.po")):
        with path.open("rb") as handle:
            for message in read_po(handle, locale=code):
                if message.id and message.string and not message.fuzzy and isinstance(message.id, str):
                    found[message.id] = message.string
    return found


def gettext(message: str) -> str:
    """`message` in the current language (itself when English or not yet translated)."""
    return catalogue(language()).get(message, message) if language() != SOURCE_LANGUAGE else message


_ = gettext

