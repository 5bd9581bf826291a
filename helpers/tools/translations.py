"""The notebooks and helper messages in another language, from one source: `python -m helpers.tools.translations`.

Two kinds of catalogue, both gettext `.po` files read and written with Babel:

- `notebooks/locale/<lang>/LC_MESSAGES/<notebook>.po`: one entry per markdown cell, its context
  (`msgctxt`) the cell's id, its `msgid` the English text. `render` swaps each markdown cell for
  its translation; code cells are never translated, so the code of every language is the same.
  The rendered notebook's parameters cell says `language = "<lang>"`, so its helper messages,
  doctor findings and plots speak it too.
- `helpers/locale/<lang>/LC_MESSAGES/<module>.po`: the messages the code marks with `_()`
  (`helpers.core.i18n`), one file per module (`steps.troubleshoot.doctor.po`), so the catalogue of
  a module changes with it and nowhere else.

`update` brings every catalogue in step with the English source (new entries empty, changed
ones kept as fuzzy with the old English beside them, gone ones dropped); `check` lists what is
missing or fuzzy, and fails if anything is (`make test` runs it through tests/unit).
"""
from __future__ import annotations

import argparse
import copy as copying
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po, write_po

from helpers.core import i18n
from helpers.core.resources import notebooks_dir

TRANSLATED = tuple(code for code in i18n.LANGUAGES if code != i18n.SOURCE_LANGUAGE)
PROJECT = "mms-notebooks"
HEADER = ("# {language} for the mms-notebooks walkthrough. Kept in step with the English source by\n"
          "# `python -m helpers.tools.translations update`; commands, YAML and log lines stay as they are.")
_LANGUAGE_LINE = re.compile(r"^language\s*=[^#\n]*?(?=\s*(#|$))", re.MULTILINE)  # the value, not its comment


def notebook_catalogue_path(notebook: Path, lang: str, folder: Optional[Path] = None) -> Path:
    """The `.po` file that holds `notebook`'s markdown in `lang`."""
    return (folder or notebook.parent / "locale") / lang / "LC_MESSAGES" / f"{notebook.stem}.po"


def read_catalogue(path: Path, lang: str) -> Catalog:
    """The catalogue at `path` (an empty one when there is none yet)."""
    if not path.is_file():
        return Catalog(locale=lang, project=PROJECT, header_comment=HEADER.format(language=i18n.LANGUAGES[lang]))
    with path.open("rb") as handle:
        return read_po(handle, locale=lang)


def write_catalogue(catalogue: Catalog, path: Path) -> None:
    """Write `catalogue` sorted by where each entry comes from (cell order, file and line), no line wrapping."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for message in catalogue:
        # Babel wraps a `#| msgid` (the English a fuzzy entry was translated from) at 76 columns
        # whatever `width` says, and reads the wrapped lines back as translator comments, which then
        # pile up; this project writes no translator comments, so those are dropped, and no
        # previous msgid is written (the fuzzy flag and the old translation say enough).
        if message.user_comments and message.user_comments[0].startswith("|"):
            message.user_comments = []
        message.previous_id = ()
    with path.open("wb") as handle:
        write_po(handle, catalogue, width=0, omit_header=False, sort_output=False, include_previous=False,
                 include_lineno=False)  # a moved line changes no catalogue


def markdown_cells(notebook: dict[str, Any]) -> Iterable[tuple[str, str]]:
    """(cell id, source) of each markdown cell with text, in order."""
    for cell in notebook["cells"]:
        text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "markdown" and text.strip():
            yield cell["id"], text


def notebook_template(path: Path) -> Catalog:
    """The English entries of one notebook: each markdown cell, keyed by its id."""
    template = Catalog(project=PROJECT)
    for number, (cell_id, text) in enumerate(markdown_cells(json.loads(path.read_text()))):
        template.add(text, context=cell_id, locations=[(path.name, number + 1)])
    return template


def source_folders() -> dict[str, list[Path]]:
    """Catalogue name -> the helpers module it covers (`steps.models.images`, `core.settings`, ...)."""
    root = i18n.locale_dir().parent
    return {".".join(path.relative_to(root).with_suffix("").parts): [path] for path in sorted(root.rglob("*.py"))}


def helpers_template(paths: list[Path]) -> Catalog:
    """Every `_("...")` message of `paths`, English, with file and line."""
    template = Catalog(project=PROJECT)
    root = i18n.locale_dir().parent.parent
    for path in paths:
        for line, message, comments, context in extract_from_file("python", str(path), keywords={"_": None}):
            if isinstance(message, str) and message:
                template.add(message, locations=[(str(path.relative_to(root)), line)], auto_comments=comments,
                             context=context)
    return template


@dataclass(frozen=True)
class Gap:
    """One entry of a catalogue that shows English: `kind` is missing or fuzzy (English changed since)."""

    catalogue: Path
    kind: str
    message: str


def merge(template: Catalog, path: Path, lang: str) -> Catalog:
    """`path`'s catalogue brought in step with `template`, written back; entries removed when `template` is empty."""
    catalogue = read_catalogue(path, lang)
    catalogue.update(template, no_fuzzy_matching=False, update_header_comment=False, update_creation_date=False)
    catalogue.obsolete.clear()
    if len(template) == 0 and not path.is_file():
        return catalogue
    write_catalogue(catalogue, path)
    return catalogue


def catalogues(lang: str) -> list[tuple[Catalog, Path]]:
    """Every template and the catalogue path it belongs to, for one language: notebooks, then helpers."""
    found = [(notebook_template(nb), notebook_catalogue_path(nb, lang)) for nb in shipped_notebooks()]
    for name, paths in source_folders().items():
        template = helpers_template(paths)
        if len(template):
            found.append((template, i18n.locale_dir() / lang / "LC_MESSAGES" / f"{name}.po"))
    return found


def shipped_notebooks() -> list[Path]:
    """The English notebooks, the source of every language."""
    return sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb"))


def update(lang: str) -> list[Path]:
    """Bring every catalogue of `lang` in step with the English source; returns the files written."""
    written = []
    for template, path in catalogues(lang):
        merge(template, path, lang)
        written.append(path)
    return written


def gaps(lang: str) -> list[Gap]:
    """What shows English in `lang`: entries missing from a catalogue, empty, or fuzzy."""
    found = []
    for template, path in catalogues(lang):
        catalogue = read_catalogue(path, lang)
        for message in template:
            if not message.id:
                continue
            have = catalogue.get(message.id, context=message.context)
            if have is None or not have.string:
                found.append(Gap(path, "missing", str(message.id)))
            elif have.fuzzy:
                found.append(Gap(path, "fuzzy", str(message.id)))
    return found


def _set_language(source: str, lang: str) -> str:
    line = f'language = "{lang}"'
    return _LANGUAGE_LINE.sub(line, source, count=1) if _LANGUAGE_LINE.search(source) else f"{line}\n{source}"


def render(path: Path, lang: str) -> dict[str, Any]:
    """The notebook at `path` in `lang`: markdown translated where the catalogue has it, code as it is,
    the parameters cell set to `language = "<lang>"`."""
    notebook = json.loads(path.read_text())
    if lang == i18n.SOURCE_LANGUAGE:
        return notebook
    i18n.check(lang)
    catalogue = read_catalogue(notebook_catalogue_path(path, lang), lang)
    out = copying.deepcopy(notebook)
    for cell in out["cells"]:
        text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "markdown":
            found = catalogue.get(text, context=cell.get("id"))
            if found is not None and found.string and not found.fuzzy:
                cell["source"] = found.string
        elif "parameters" in cell.get("metadata", {}).get("tags", []):
            cell["source"] = _set_language(text, lang)
    out["metadata"]["language_info"] = {**out["metadata"].get("language_info", {}), "name": "python"}
    out["metadata"]["mms"] = {"language": lang}
    return out


def render_text(path: Path, lang: str) -> str:
    """`render` as the file's text (one space of indent as Jupyter writes, non-ASCII kept readable)."""
    if lang == i18n.SOURCE_LANGUAGE:
        return path.read_text()
    return json.dumps(render(path, lang), indent=1, ensure_ascii=False) + "\n"


def render_all(dest: Path, lang: str) -> list[Path]:
    """Every notebook rendered in `lang` into `dest` (made); returns the paths written."""
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for source in shipped_notebooks():
        target = dest / source.name
        target.write_text(render_text(source, lang))
        written.append(target)
    return written


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.tools.translations", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("update", "bring the catalogues in step with the English source"),
                       ("check", "list what is not translated yet; exit 1 if anything is")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--lang", choices=TRANSLATED, default=TRANSLATED[0])
    render_cmd = sub.add_parser("render", help="write the notebooks in one language into DIR")
    render_cmd.add_argument("dir", type=Path)
    render_cmd.add_argument("--lang", choices=tuple(i18n.LANGUAGES), default=TRANSLATED[0])
    args = parser.parse_args(argv)
    if args.command == "update":
        for path in update(args.lang):
            print(path)
        return 0
    if args.command == "render":
        for path in render_all(args.dir, args.lang):
            print(path)
        return 0
    found = gaps(args.lang)
    for gap in found:
        first = gap.message.strip().splitlines()[0][:90]
        print(f"{gap.catalogue.name}: {gap.kind}: {first}")
    print(f"{len(found)} entr{'y' if len(found) == 1 else 'ies'} not translated into {args.lang}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
