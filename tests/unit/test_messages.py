"""Every message the helpers mark with `_()` reaches the catalogue and formats in every language.

Read from the source, not run: a message Babel cannot extract (an f-string, a variable, a
concatenation of pieces) is never translated, and a translation whose `{placeholders}` differ
from the English raises KeyError (or shows a raw `{name}`) only in that language, where no
English test would see it.
"""
from __future__ import annotations

import ast
import string
from pathlib import Path
from typing import Optional

import pytest
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po

from helpers.core import i18n

HELPERS = i18n.locale_dir().parent
SOURCES = sorted(HELPERS.rglob("*.py"))
CATALOGUES = sorted(i18n.locale_dir().glob("*/LC_MESSAGES/*.po"))


def fields(text: str) -> list[str]:
    """The placeholder names of a str.format template, in order (ValueError if it does not parse)."""
    return [name for _literal, name, _spec, _conversion in string.Formatter().parse(text) if name is not None]


def is_gettext(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "_"


def gettext_calls(path: Path) -> list[tuple[ast.Call, Optional[ast.Call], bool]]:
    """Each `_(...)` call in `path`, with the `.format(...)` call made on its result (None if none) and
    whether it is a value of a dict literal (a table of templates its caller formats later)."""
    tree = ast.parse(path.read_text(), str(path))
    formats = {id(node.func.value): node for node in ast.walk(tree)
               if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format"}
    tables = {id(value) for node in ast.walk(tree) if isinstance(node, ast.Dict) for value in node.values}
    return [(node, formats.get(id(node)), id(node) in tables) for node in ast.walk(tree) if is_gettext(node)]


def where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(HELPERS.parent)}:{node.lineno}"


def test_the_helpers_mark_messages() -> None:
    found = [call for path in SOURCES for call, _parent, _table in gettext_calls(path)]
    assert len(found) > 100  # the scan reads the sources it is meant to


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(HELPERS)))
def test_every_marked_message_is_a_literal_with_named_placeholders_that_babel_extracts(path: Path) -> None:
    calls = gettext_calls(path)
    if not calls:
        return
    extracted = {message for _line, message, _comments, _context in
                 extract_from_file("python", str(path), keywords={"_": None})}
    for call, formatted, in_table in calls:
        assert len(call.args) == 1 and not call.keywords, f"{where(path, call)}: _() takes one message"
        message = call.args[0]
        assert isinstance(message, ast.Constant) and isinstance(message.value, str), (
            f"{where(path, call)}: _() of {ast.unparse(message)}, not a plain string literal: Babel cannot "
            "extract it, so it is never translated (write _(\"... {name} ...\").format(name=...))")
        text = message.value
        assert text in extracted, f"{where(path, call)}: Babel does not extract {text!r}"
        names = fields(text)
        named = all(name.isidentifier() for name in names)
        if not formatted:  # its braces are text (a jsonpath); a `{name}` there means a forgotten .format()
            assert not names or not named or in_table, (
                f"{where(path, call)}: {text!r} has placeholders but is not .format()-ed")
            continue
        assert names and named, (f"{where(path, call)}: placeholders must be named ({text!r}), so that a "
                                 "translation may put them in another order")
        if formatted:
            assert not formatted.args, f"{where(path, call)}: .format() with positional arguments"
            given = {keyword.arg for keyword in formatted.keywords}
            assert None not in given, f"{where(path, call)}: .format(**...) hides which names it fills"
            assert set(names) == given, (f"{where(path, call)}: {text!r} names {sorted(set(names))}, "
                                         f".format() gives {sorted(given)}")


@pytest.mark.parametrize("path", CATALOGUES, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_every_translation_has_the_placeholders_of_its_english(path: Path) -> None:
    with path.open("rb") as handle:
        catalogue = read_po(handle)
    for message in catalogue:
        if not message.id or not message.string or not isinstance(message.id, str):
            continue
        try:
            translated = fields(message.string)
        except ValueError as exc:
            raise AssertionError(f"{path.name}: {message.string!r} is not a valid template ({exc})") from None
        assert sorted(set(translated)) == sorted(set(fields(message.id))), (
            f"{path.name}: {message.string!r} has placeholders {sorted(set(translated))}, "
            f"the English {message.id!r} has {sorted(set(fields(message.id)))}")


def test_a_korean_setup_error_formats() -> None:
    from helpers.core import settings
    from helpers.core.errors import SetupError

    i18n.set_language("ko")
    try:
        with pytest.raises(SetupError) as caught:
            settings.validate("bucket", "Bad")
    finally:
        i18n.set_language(None)
    assert "'Bad'" in caught.value.cause
    assert caught.value.cause != "bucket 'Bad' is not a valid S3 bucket name"
