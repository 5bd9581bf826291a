"""Put the walkthrough's notebooks where a learner's Jupyter opens them: `python -m helpers.notebooks copy [DIR]`.

`--lang ko` writes them in Korean (한국어: `python -m helpers.notebooks copy --lang ko`): the same
code, the markdown from the Korean catalogue, and `language = "ko"` in the parameters cell, so
helper messages, doctor findings and plots are in Korean too (helpers.tools.translations). The
default is the `language` setting (`MMS_LANGUAGE`, the settings file), else English.

DIR defaults to `./mms-notebooks` (in a Kubeflow Notebook, the terminal starts in the home
folder, which is the file browser's root). A learner's copy is never overwritten silently:

- a notebook not in DIR yet is copied;
- one identical to the shipped version is left as it is;
- one that differs (the learner edited or ran it, or the package has a newer version) is kept,
  and the shipped version is written next to it as `NAME.new.ipynb`; `--force` overwrites it
  instead (the old copy is kept as `NAME.ipynb.bak`).

It prints one line per notebook saying what it did.
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


@dataclass(frozen=True)
class Copied:
    """What `copy` did for one notebook: `action` is copied, unchanged, new-version or replaced."""

    name: str
    action: str
    path: Path


def shipped() -> list[Path]:
    """The notebooks this install carries, in the guide's order."""
    return sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb"))


def copy(dest: Path, force: bool = False, lang: str = i18n.SOURCE_LANGUAGE) -> list[Copied]:
    """Copy the shipped notebooks in `lang` into `dest` (created), keeping a learner's edited copies (module doc)."""
    dest = Path(dest).expanduser()
    if dest.exists() and not dest.is_dir():
        from helpers.core.errors import SetupError

        raise SetupError(_("{dest} exists and is not a folder").format(dest=dest),
                         _("pass another folder: python -m helpers.notebooks copy DIR"))
    dest.mkdir(parents=True, exist_ok=True)
    done = []
    for source in shipped():
        target, text = dest / source.name, translations.render_text(source, lang)
        if not target.exists():
            target.write_text(text)
            done.append(Copied(source.name, "copied", target))
        elif target.read_text() == text:
            done.append(Copied(source.name, "unchanged", target))
        elif force:
            shutil.copyfile(target, target.with_name(target.name + ".bak"))
            target.write_text(text)
            done.append(Copied(source.name, "replaced", target))
        else:
            fresh = target.with_name(f"{source.stem}.new.ipynb")
            fresh.write_text(text)
            done.append(Copied(source.name, "new-version", fresh))
    return done


def report(done: list[Copied], dest: Path) -> str:
    """What a learner reads after `copy`: one line per notebook, then what to open."""
    says = {"copied": _("copied"), "unchanged": _("already there, unchanged"),
            "new-version": _("yours differs and is kept; the shipped version is"),
            "replaced": _("replaced (your old copy: .bak)")}
    lines = [f"{c.name:<22} {says[c.action]}{' ' + c.path.name if c.action == 'new-version' else ''}" for c in done]
    lines.append(_("notebooks in {folder}: open 00_cluster_prep.ipynb first (in a Kubeflow Notebook, target='cluster' "
                   "is the default there)").format(folder=Path(dest).expanduser().resolve()))
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
        print(_("no notebooks in {folder}: the install is incomplete; reinstall the package").format(folder=notebooks_dir()),
              file=sys.stderr)
        return 1
    lang = args.lang or settings.resolve_with_sources({})[0]["language"]
    print(report(copy(args.dir, args.force, lang), args.dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
