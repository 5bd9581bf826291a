"""`python -m helpers.local up | down | status | env | logs`: run the embedded local stack."""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Callable

from helpers.core.errors import SetupError
from helpers.core.i18n import _
from helpers.core.show import pad, text_width
from helpers.local.cluster import node, projection
from helpers.local.stack import parts
from helpers.local.stack.process import log_tail
from helpers.local.stack.releases import DEFAULT_PROFILE, PROFILE_ENV, PROFILES, Profile
from helpers.local.stack.s3server import rclone_binary
from helpers.local.stack.stack import COMPONENTS_BY_NAME, ORDER, ComponentStatus, Stack
from helpers.local.stack.tf_backend import status_line as tf_status_line
from helpers.local.stack.torch_backend import status_line


def _labels() -> dict[str, str]:
    return {"root": _("state folder"), "profile": _("profile"), "node": _("node"), "configmap": _("configmap")}


def _states() -> dict[str, str]:
    return {"healthy": _("healthy"), "running": _("running"), "down": _("DOWN"), "stopped": _("stopped")}


def _exits(_: Callable[[str], str] = _) -> dict[str, str]:
    """How a process ended, as the stack records it (`process.exit_reason`): `_exits(str)` in English, else
    in the reader's language (the parameter is `_` so that the catalogue tool finds the messages)."""
    return {"signal_number": _("killed by signal {number}"), "signal": _("killed by {signal}"),
            "code": _("exit code {code}"), "unknown": _("exited (status unknown: another process started it)"),
            "exited": _("exited")}


def _right(text: str, width: int) -> str:
    return " " * max(0, width - text_width(text)) + text


def status_lines(root: Path, profile: Profile, node_size: node.NodeSize, memory_limits: str, delay: float,
                 rows: list[ComponentStatus], backends: list[str]) -> list[str]:
    """What `status` prints, in the reader's language; names, PIDs, addresses and commands stay as they are.

    Columns are counted in terminal cells (`text_width`: a Hangul syllable takes two), so a Korean
    table lines up as the English one does."""
    labels = _labels()
    head = max(text_width(label) for label in labels.values()) + 2
    field = lambda key: pad(labels[key] + ":", head)
    when = _("{seconds} s after a change").format(seconds=f"{delay:g}") if delay else _("at once")
    lines = [field("root") + str(root),
             field("profile") + _("{profile} (API group {group})").format(profile=profile.shown, group=profile.group),
             field("node") + node_size.describe(),
             " " * head + memory_limits,
             field("configmap") + _("modelconfig-<isvc>-0 reaches the agent {when} (a kubelet's sync: 60-90 s; "
                                    "`up --configmap-delay SECONDS` or {variable})").format(
                 when=when, variable=projection.DELAY_ENV)]
    # A part inside another process is indented under it: its PID is its host's, it restarts with it.
    names = ["  " + _("{name} (in {host})").format(name=parts.shown_name(row.name), host=row.inside)
             if row.inside else row.name for row in rows]
    width = max([34] + [text_width(name) + 1 for name in names])
    states = _states()
    titles = [_("COMPONENT"), _("STATE"), "PID", _("RESTARTS"), _("ADDRESS")]
    state_width = max([10] + [text_width(state) for state in (*states.values(), titles[1])])
    restarts_width = max(8, text_width(titles[3]))
    lines.append(f"{pad(titles[0], width)} {pad(titles[1], state_width)} {_right('PID', 7)} "
                 f"{_right(titles[3], restarts_width)}  {titles[4]}")
    for name, row in zip(names, rows):
        state = states["healthy" if row.healthy else "running" if row.running else "down" if row.pid else "stopped"]
        restarts = "-" if row.inside else str(row.restarts)
        lines.append(f"{pad(name, width)} {pad(state, state_width)} {_right(str(row.pid or '-'), 7)} "
                     f"{_right(restarts, restarts_width)}  {row.address}")
        if row.last_exit:
            lines.append(f"{pad('', width)} " + _("last exit: {exit}").format(exit=parts.shown(row.last_exit, _exits)))
        if row.detail:
            lines.append(f"{pad('', width)} {row.detail}")
    return lines + backends


def _status(stack: Stack) -> int:
    rows = stack.status()
    lines = status_lines(stack.root, stack.profile(), stack.node_size(), stack.memory_limits_line(),
                         stack.configmap_delay(), rows,
                         [status_line(stack.backends_dir), tf_status_line(stack.backends_dir)])
    print("\n".join(lines))
    # Components the stack runs: a component not installed (no record, no program) is left out.
    own = [r for r in rows[:len(ORDER)] if r.pid or r.running or COMPONENTS_BY_NAME[r.name].installed()]
    return 0 if all(r.healthy for r in own) else 1


def _logs(stack: Stack, component: str, lines: int) -> int:
    names = [component] if component else [p.stem for p in sorted(stack.logs.glob("*.log"))]
    for name in names:
        path = stack.logs / f"{name}.log"
        print(f"==> {path} <==")
        print(log_tail(path, lines) if path.exists() else "    " + _("(no log yet)"))
    return 0


def _delay(value: str) -> float:
    try:
        return projection.parse_delay(value, "--configmap-delay")
    except SetupError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.local", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start every part that is not running (a running stack is left as is)")
    up.add_argument("--profile", choices=sorted(PROFILES), default=None,
                    help=f"the real cluster to reproduce (default ${PROFILE_ENV}, else {DEFAULT_PROFILE}); "
                         "kept by the state folder")
    up.add_argument("--node-cpu", default=None, metavar="CPU",
                    help=f"the node's allocatable cpu, e.g. 8 (default ${node.CPU_ENV}, else what the state folder "
                         "kept, else the release's); kept by the state folder")
    up.add_argument("--node-memory", default=None, metavar="MEMORY",
                    help=f"the node's allocatable memory, e.g. 32Gi (default ${node.MEMORY_ENV}, else kept, else the "
                         "release's): a server whose requests do not fit stays Pending")
    up.add_argument("--configmap-delay", type=_delay, default=None, metavar="SECONDS",
                    help="how long a changed model-config ConfigMap takes to reach the agent, as a kubelet's "
                         f"sync (60-90 s on a cluster; default ${projection.DELAY_ENV}, else the state folder's, "
                         "else 0); kept by the state folder, taken by a running stack at once")
    sub.add_parser("down", help="stop the supervisor, then the stack's processes; data and manifests are kept")
    sub.add_parser("status", help="what runs, where, and whether it is healthy (exit 1 if not)")
    env = sub.add_parser("env", help="shell export lines for kubectl, curl and S3 clients")
    env.add_argument("--identity", choices=("admin", "learner"), default="admin",
                     help="whose credentials: the admin (default) or the learner, the `default-editor` service "
                          "account of the Profile --namespace, as in a Kubeflow Notebook")
    env.add_argument("--namespace", default="mms", help="the learner's Profile namespace (default mms)")
    logs = sub.add_parser("logs", help="the end of each component's log")
    logs.add_argument("component", nargs="?", default="", help="one log, e.g. s3 or kube-apiserver")
    logs.add_argument("-n", "--lines", type=int, default=20)
    args = parser.parse_args(argv)

    stack = Stack()
    try:
        if args.command == "up":
            stack.up(profile=args.profile, node_cpu=args.node_cpu, node_memory=args.node_memory,
                     configmap_delay=args.configmap_delay)
            return _status(stack)
        if args.command == "down":
            if not stack.down():
                print(_("nothing was running"))
            return 0
        if args.command == "status":
            return _status(stack)
        if args.command == "env":
            for key, value in stack.env(args.identity, args.namespace).items():
                print(f"export {key}={shlex.quote(value)}")
            if stack.profile().gateway_auth:  # the gateway wants a token or session: read from its file
                for key, path in stack.credential_files(args.identity, args.namespace).items():
                    print(f'export {key}="$(cat {shlex.quote(str(path))})"')
            rclone_dir = os.path.dirname(rclone_binary())
            if rclone_dir not in os.environ.get("PATH", "").split(os.pathsep):
                print(f'export PATH={shlex.quote(rclone_dir)}:"$PATH"  # rclone, the `mc` of the local stack')
            return 0
        return _logs(stack, args.component, args.lines)
    except SetupError as exc:
        print(_("error: {error}").format(error=exc), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
