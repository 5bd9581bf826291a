"""`python -m helpers.doctor`: every check on a namespace and its server, as a table or as JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Optional

from helpers.core.constants import (
    API_GROUPS,
)
from helpers.core.errors import SetupError
from helpers.core.i18n import _
from helpers.steps.troubleshoot import doctor
from helpers.steps.troubleshoot.doctor import problems, run_checks, table
from helpers.steps.troubleshoot.doctor.gather import gather


def main(argv: Optional[list[str]] = None) -> int:
    from helpers.clients.target import resolve_settings, select

    parser = argparse.ArgumentParser(prog="python -m helpers.doctor", description=doctor.__doc__.splitlines()[0],
                                     epilog="Unset options come from where the notebooks take them: MMS_* "
                                            "variables, the settings file, else the guide's defaults.")
    parser.add_argument("--namespace", default="")
    parser.add_argument("--server", default="")
    parser.add_argument("--target", choices=("local", "cluster"), default=None)
    parser.add_argument("--identity", default="admin", choices=("admin", "learner"))
    parser.add_argument("--api-group", default="", choices=("",) + API_GROUPS)
    parser.add_argument("--bucket", default="")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    parser.add_argument("--problems", action="store_true", help="print only the PROBLEM rows")
    parser.add_argument("--error", default="", help="the error a request got (e.g. Triton's answer), to read it too")
    args = parser.parse_args(argv)
    try:
        chosen, _where = resolve_settings({"target": args.target, "namespace": args.namespace, "server_name": args.server,
                                      "bucket": args.bucket, "api_group": args.api_group})
        from helpers.core import i18n

        i18n.set_language(chosen.get("language"))
        place = select(chosen["target"])
        api = place.api_client(args.identity, chosen["namespace"])
    except SetupError as exc:
        print(exc, file=sys.stderr)
        return 2
    facts = gather(api, place, chosen["namespace"], chosen["server_name"], chosen["api_group"] or None,
                   bucket=chosen["bucket"])
    facts.error = args.error or facts.error
    findings = run_checks(facts)
    shown = problems(findings) if args.problems else findings
    if args.json:
        print(json.dumps([f.as_dict() for f in shown], indent=1, ensure_ascii=False))
    else:
        print(table(shown) if shown else _("no PROBLEM rows: the doctor sees none of the known pitfalls"))
    return 1 if problems(findings) else 0


if __name__ == "__main__":
    sys.exit(main())
