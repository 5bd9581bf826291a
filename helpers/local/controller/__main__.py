"""`python -m helpers.local.controller --state-dir DIR`: run the local controller until SIGTERM."""
from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import signal
import threading
from pathlib import Path

from helpers.core import i18n
from helpers.local.controller import Controller
from helpers.local.controller.kube import connect
from helpers.local.stack import releases as profiles


def main() -> None:
    # The controller and the agents it starts stand in for the cluster's: their conditions, Events and
    # log lines are English whatever language the learner chose (MMS_LANGUAGE), as a real cluster's are.
    os.environ[i18n.ENV] = i18n.SOURCE_LANGUAGE
    i18n.set_language(i18n.SOURCE_LANGUAGE)
    parser = argparse.ArgumentParser(prog="python -m helpers.local.controller")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--profile", default=None, help="the version profile to play (see helpers.local.stack.releases)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    api = connect(os.environ["KUBECONFIG"])
    faulthandler.register(signal.SIGUSR2, all_threads=True)  # `kill -USR2 <pid>`: every thread's stack to the log
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    Controller(api, args.state_dir, profiles.get(args.profile)).run(stop, args.state_dir / "controller.ready")


if __name__ == "__main__":
    main()
