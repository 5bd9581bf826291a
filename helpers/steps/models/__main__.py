"""`python -m helpers.models fetch | pack | unpack`: the guide's models in the model cache, for offline machines."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from helpers.core.errors import SetupError
from helpers.core.i18n import _
from helpers.steps.models import model_pack
from helpers.steps.models.model_sources import SOURCES, cache_root, fetch


def main(argv: Optional[list[str]] = None) -> int:
    """`python -m helpers.models fetch [NAME...] | pack FILE [NAME...] | unpack FILE [--replace]`.

    An instructor runs `fetch` then `pack` where there is internet, and each offline machine
    `unpack` (see `helpers.steps.models.model_pack`). Errors print their cause and fix, exit status 1.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m helpers.models",
                                     description=_("the guide's models in the model cache ({cache}): download, "
                                                   "pack, unpack").format(cache=cache_root()))
    commands = parser.add_subparsers(dest="command", required=True)
    get = commands.add_parser("fetch", help=_("download the real models into the cache (needs internet)"))
    get.add_argument("names", nargs="*", metavar="NAME", help=_("default: all of {names}").format(names=", ".join(SOURCES)))
    put = commands.add_parser("pack", help=_("write the cached real models into one checksummed archive"))
    put.add_argument("file", type=Path)
    put.add_argument("names", nargs="*", metavar="NAME",
                     help=_("default: all of {names} that are cached").format(names=", ".join(SOURCES)))
    take = commands.add_parser("unpack", help=_("check an archive made by `pack` and install its models into the cache"))
    take.add_argument("file", type=Path)
    take.add_argument("--replace", action="store_true", help=_("replace a cached model whose files differ"))
    take.add_argument("--sha256", help=_("the archive's sha256 as `pack` printed it"))
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            for name in args.names or SOURCES:
                fetch(name, offline=False)
        elif args.command == "pack":
            model_pack.pack(args.file, args.names or None)
        else:
            model_pack.unpack(args.file, replace=args.replace, sha256=args.sha256)
    except SetupError as exc:
        print(_("error: {cause}").format(cause=exc.cause), file=sys.stderr)
        if exc.fix:
            print("  " + _("fix: {fix}").format(fix=exc.fix), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
