"""Put the walkthrough's notebooks where a learner's Jupyter opens them: `python -m helpers.notebooks copy [DIR]`.

`--lang ko` writes them in Korean (한국어: `python -m helpers.notebooks copy --lang ko`): the same
code, the markdown from the Korean catalogue, and `language = "ko"` in the parameters cell, so
helper messages, doctor findings and plots are in Korean too (helpers.tools.translations). The
default is the `language` setting (`MMS_LANGUAGE`, the settings file), else English. The start
page comes along in the same language, as `START_HERE.md` (the order of the notebooks, what each
teaches and takes, the settings, where to get help): `notebooks/START_HERE.md` in English,
`notebooks/START_HERE.<lang>.md` in another language.

DIR defaults to `./mms-notebooks` (in a Kubeflow Notebook, the terminal starts in the home
folder, which is the file browser's root). A learner's copy is never overwritten silently:

- a notebook (or the start page) not in DIR yet is copied;
- one identical to the shipped version is left as it is;
- one that differs (the learner edited or ran it, or the package has a newer version) is kept,
  and the shipped version is written next to it as `NAME.new.ipynb` (`START_HERE.new.md`);
  `--force` overwrites it instead (the old copy is kept as `NAME.ipynb.bak`).

It prints one line per file saying what it did, in the chosen language.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from helpers.core import i18n, settings
from helpers.core.i18n import _
from helpers.core.resources import notebooks_dir
from helpers.tools import translations

DEFAULT_DIR = Path("mms-notebooks")
START_PAGE = "START_HERE.md"


@dataclass(frozen=True)
class Copied:
    """What `copy` did for one file (a notebook, the start page): `action` is copied, unchanged, new-version
    or replaced."""

    name: str
    action: str
    path: Path


def shipped() -> list[Path]:
    """The notebooks this install carries, in the guide's order."""
    return sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb"))


def start_page(lang: str = i18n.SOURCE_LANGUAGE) -> Path:
    """The shipped start page in `lang` (`START_HERE.<lang>.md`; English `START_HERE.md` when there is none)."""
    translated = notebooks_dir() / f"{Path(START_PAGE).stem}.{lang}.md"
    return translated if lang != i18n.SOURCE_LANGUAGE and translated.is_file() else notebooks_dir() / START_PAGE


def _files(lang: str) -> list[tuple[str, str]]:
    """(name in DIR, text) of everything `copy` writes: the notebooks in `lang`, then the start page."""
    found = [(source.name, translations.render_text(source, lang)) for source in shipped()]
    page = start_page(lang)
    return found + ([(START_PAGE, page.read_text(encoding="utf-8"))] if page.is_file() else [])


def copy(dest: Path, force: bool = False, lang: str = i18n.SOURCE_LANGUAGE) -> list[Copied]:
    """Copy the shipped notebooks and start page in `lang` into `dest` (created), keeping a learner's edited
    copies (module doc)."""
    dest = Path(dest).expanduser()
    if dest.exists() and not dest.is_dir():
        from helpers.core.errors import SetupError

        raise SetupError(_("{path} exists and is not a folder").format(path=dest),
                         _("pass another folder: {command}").format(command="python -m helpers.notebooks copy DIR"))
    dest.mkdir(parents=True, exist_ok=True)
    done = []
    for name, text in _files(lang):
        target = dest / name
        if not target.exists():
            target.write_text(text, encoding="utf-8")
            done.append(Copied(name, "copied", target))
        elif target.read_text(encoding="utf-8") == text:
            done.append(Copied(name, "unchanged", target))
        elif force:
            shutil.copyfile(target, target.with_name(target.name + ".bak"))
            target.write_text(text, encoding="utf-8")
            done.append(Copied(name, "replaced", target))
        else:
            fresh = target.with_name(f"{target.stem}.new{target.suffix}")
            fresh.write_text(text, encoding="utf-8")
            done.append(Copied(name, "new-version", fresh))
    return done


def report(done: list[Copied], dest: Path) -> str:
    """What a learner reads after `copy`: one line per file, then what to open."""
    says = {"copied": _("copied"), "unchanged": _("already there, unchanged"),
            "new-version": _("yours differs and is kept; the shipped version is"),
            "replaced": _("replaced (your old copy: .bak)")}
    lines = [f"{c.name:<22} {says[c.action]}{' ' + c.path.name if c.action == 'new-version' else ''}" for c in done]
    lines.append(_("notebooks in {path}: read {page}, then open 00_cluster_prep.ipynb first (in a Kubeflow "
                   "Notebook, target='cluster' is the default there)").format(
                       path=Path(dest).expanduser().resolve(), page=START_PAGE))
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.notebooks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("copy", help="copy the notebooks into DIR (default ./mms-notebooks)")
    cmd.add_argument("dir", nargs="?", type=Path, default=DEFAULT_DIR)
    cmd.add_argument("--force", action="store_true", help="overwrite edited copies (each kept as NAME.ipynb.bak)")
    cmd.add_argument("--lang", choices=tuple(i18n.LANGUAGES), default=None,
                     help="en or ko (한국어); default: the language setting (MMS_LANGUAGE, settings file), else en")
    sub.add_parser("where", help="print the folder of the shipped notebooks")
    args = parser.parse_args(argv)
    if args.command == "where":
        print(notebooks_dir())
        return 0
    if not shipped():
        print(_("no notebooks in {path}: the install is incomplete; reinstall the package").format(path=notebooks_dir()),
              file=sys.stderr)
        return 1
    lang = args.lang or settings.resolve_with_sources({})[0]["language"]
    i18n.set_language(lang)  # the report in the language of the copies
    print(report(copy(args.dir, args.force, lang), args.dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
