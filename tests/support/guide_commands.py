"""The guide's commands, taken from its text (`data/guide_commands.md`), run in one bash shell.

`commands()` reads every command of the guide in order (sample output and comments left out);
`plan()` says for each whether it runs verbatim, is substituted (and why) or is skipped (and
why); `run()` executes the plan in one shell, after the guide's own setting-up and
`eval "$(python -m helpers.local env)"`, and returns each command's output; `report()` says how
many ran verbatim and lists the others. Used by tests/stack/test_notebooks.py after the walkthrough.

The notebooks' own shell blocks: `shown_blocks()` reads each labelled block an executed notebook
printed (core.show.show_shell: a `# <label>` line, then `$ ` lines), and a `Reader` pastes them, line by
line, into one bash (`Shell`) right after each notebook (test_notebooks.py: 00-05; test_doctor_06.py: 06).
"""
from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from helpers.core.resources import data_path

GUIDE_BLOCKS = data_path("guide_commands.md")
_COMMAND = re.compile(r"^(kubectl |curl |wget |chmod |mkdir |cd |tar |mv |\./mc |\./gsutil |\(cd |[A-Z_]+=)")
_MARK = "@@guide-command"

# What the guide's author had in their shell, which the guide never shows: the alias `k` in
# `SERVER=$(k get pod ...)`, and `mms` as the current namespace (`kubectl logs $SERVER
# kfserving-container` has no -n). Set on a private copy of the stack's kubeconfig.
PREAMBLE = [
    ('eval "$(python -m helpers.local env)"', "the local stack's settings (issue: run after this)"),
    ("shopt -s expand_aliases; alias k=kubectl", "the guide writes `k get pod` (the author's alias)"),
    ('cp "$KUBECONFIG" ./kubeconfig && export KUBECONFIG=$PWD/kubeconfig && '
     "kubectl config set-context --current --namespace=mms >/dev/null",
     "the guide's `kubectl logs $SERVER kfserving-container` has no -n: its shell was in mms"),
]

# Requests whose JSON body is megabytes (inception: 1x299x299x3 floats, 5.7 MB).
LARGE_BODIES = {"inception"}

# Guide command -> (replacement, reason); replacement None: skipped.
OFFLINE = "no downloads here: the model the walkthrough uploaded is fetched back from the local S3"
SUBSTITUTIONS: dict[str, tuple[Optional[str], str]] = {
    "curl -v http://${NODE_IP}:${TARGET_PORT}/v2 # curl -v  http://172.23.4.101:31582/v2":
        (None, "the guide's fallback when the ingress fails: NODE_IP/TARGET_PORT are never set, and "
               "NodePorts need kube-proxy, which the local stack has not"),
    "curl -v http://${CLUSTER_IP}:${PORT}/v2 # curl -v http://10.0.147.0:8080/v2":
        (None, "the guide's other fallback (pod IP + PORT, never set); the ingress answered"),
    "wget https://dl.min.io/client/mc/release/linux-amd64/mc # Download minio client binary":
        (None, "the MinIO client: the local stack ships rclone, set up by `helpers.local env`"),
    "chmod +x mc": (None, "goes with the mc download"),
    "./mc config host add myminio http://$MINIO_IP:$MINIO_PORT minio minio123 # minio.yaml 에서 변경한 "
    "ACCESS_KEY_ID 와 SECRET_ACCESS_KEY 사용":
        ("rclone listremotes --long", "`helpers.local env` wrote rclone's remote myminio (a 0600 file)"),
    "wget https://storage.googleapis.com/pub/gsutil.tar.gz # Download gsutil binary": (None, OFFLINE),
    "tar xfz gsutil.tar.gz -C .": (None, OFFLINE),
    "cd gsutil": (None, "goes with the gsutil download"),
    "./gsutil cp -r gs://kfserving-examples/models/torchscript/cifar10 ../models":
        ("rclone copy myminio:triton/torchscript/cifar10 models/cifar10", OFFLINE),
    "cd ..": (None, "goes with `cd gsutil`"),
    "./mc mb myminio/triton": ("rclone mkdir myminio:triton", "mc -> rclone"),
    "./mc cp -r models/cifar10 myminio/triton/torchscript":
        ("rclone copy models/cifar10 myminio:triton/torchscript/cifar10", "mc -> rclone"),
    "wget -O /tmp/inception_v3_2016_08_28_frozen.pb.tar.gz https://storage.googleapis.com/download.tensorflow.org/"
    "models/inception_v3_2016_08_28_frozen.pb.tar.gz":
        ("rclone copy myminio:triton/models/inception_graphdef models/inception_graphdef", OFFLINE),
    "(cd /tmp && tar xzf inception_v3_2016_08_28_frozen.pb.tar.gz)": (None, OFFLINE),
    "mv /tmp/inception_v3_2016_08_28_frozen.pb ./models/inception_graphdef/1/model.graphdef": (None, OFFLINE),
    "./mc cp -r models/inception_graphdef myminio/triton/models":
        ("rclone copy models/inception_graphdef myminio:triton/models/inception_graphdef", "mc -> rclone"),
    "./mc tree myminio/": ("rclone tree myminio:", "mc -> rclone"),
    "./mc config host ls": ("rclone listremotes --long", "mc -> rclone"),
}


@dataclass
class Step:
    guide: str
    run: Optional[str]
    reason: str = ""
    output: str = ""
    code: Optional[int] = None
    notebook: str = ""  # for a line a notebook printed: which, and its block's label
    label: str = ""

    @property
    def kind(self) -> str:
        return "verbatim" if self.run == self.guide else "skipped" if self.run is None else "substituted"


def commands(text: Optional[str] = None) -> list[str]:
    """Every command line of the guide's code blocks, in order (continued lines joined)."""
    text = GUIDE_BLOCKS.read_text() if text is None else text
    found = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.M | re.S):
        pending = ""
        for line in block.splitlines():
            if pending:
                pending += " " + line.strip()
                if not line.rstrip().endswith("\\"):
                    found.append(re.sub(r"\s*\\\s+", " ", pending))
                    pending = ""
                continue
            stripped = line.strip()
            if not _COMMAND.match(stripped):
                continue  # sample output, a comment or a blank line
            if stripped.endswith("\\"):
                pending = stripped
            else:
                found.append(stripped)
    return found


def plan(guide: list[str], both_groups: bool, ingress_url: str, guarded: bool = False,
         open_gateway: bool = False) -> list[Step]:
    """Each command as it runs here. Three substitutions depend on the stack, and say so:
    with both API groups installed kubectl resolves `inferenceservice`/`trainedmodel` to KServe's,
    a gateway not on port 80 is reached through MMS_INGRESS_URL (or, on an `open_gateway`, the
    guide's CLUSTER_IP with that port), and a `guarded` gateway (a Kubeflow 1.3+ profile) wants the
    session in MMS_INGRESS_COOKIE."""
    steps, model = [], ""
    for command in guide:
        model = command.split("=", 1)[1] if command.startswith("MODEL_NAME=") else model
        if command in SUBSTITUTIONS:
            replacement, reason = SUBSTITUTIONS[command]
            steps.append(Step(command, replacement, reason))
            continue
        run, reasons = command, []
        if both_groups and re.search(r"\b(inferenceservices?|trainedmodel) ", run):
            run = re.sub(r"\b(inferenceservices?|trainedmodel) ", r"\1.serving.kubeflow.org ", run)
            reasons.append("both API groups are installed, and kubectl resolves the short name to "
                           "serving.kserve.io: the group is named")
        if "http://${CLUSTER_IP}/" in run and ingress_url != "http://127.0.0.1":
            port = ingress_url.rsplit(":", 1)[-1]
            run = run.replace("http://${CLUSTER_IP}", f"http://${{CLUSTER_IP}}:{port}" if open_gateway
                              else "${MMS_INGRESS_URL}")
            reasons.append(f"the gateway could not listen on port 80 here (not root, or the port was taken): "
                           f"it is {ingress_url}, which MMS_INGRESS_URL holds")
        if guarded and run.startswith("curl ") and '-H "Host: ${SERVICE_HOSTNAME}"' in run:
            run = run.replace('-H "Host: ${SERVICE_HOSTNAME}"',
                              '-H "Host: ${SERVICE_HOSTNAME}" -H "Cookie: ${MMS_INGRESS_COOKIE}"')
            reasons.append("Kubeflow 1.3's gateway (oidc-authservice) redirects a request without a session to "
                           "Dex; the guide's cluster had no auth: the session cookie `env` exports is sent")
        if " -d @" in run and model in LARGE_BODIES:
            run = run.replace("curl -v -X POST", 'curl -v -X POST -H "Content-Type: application/json"')
            reasons.append("`curl -d` sends a form content type, and Triton 2.51 (the local server) crashes "
                           "parsing a large form body (Signal 11); a JSON content type avoids it")
        steps.append(Step(command, run, "; ".join(reasons)))
    return steps


def run(steps: list[Step], workdir: Path, env: dict[str, str], timeout: float = 300) -> list[Step]:
    """Run the steps in one bash shell in `workdir` (after PREAMBLE), filling output and exit code."""
    lines = []
    for command, _ in PREAMBLE:
        lines.append(command)
    for i, step in enumerate(steps):
        if step.run is None:
            continue
        lines += [f"echo '{_MARK} {i} start'", f"{step.run} 2>&1", f"printf '\\n{_MARK} {i} rc=%s\\n' $?"]
    script = workdir / "guide_commands.sh"
    script.write_text("\n".join(lines) + "\n")
    done = subprocess.run(["bash", str(script)], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=timeout)
    text = done.stdout
    for i, step in enumerate(steps):
        match = re.search(rf"^{_MARK} {i} start\n(.*?)^{_MARK} {i} rc=(\d+)$", text, re.M | re.S)
        if match:
            step.output, step.code = match.group(1)[:-1], int(match.group(2))  # less the newline printf adds
    return steps


def outputs(steps: list[Step], guide: str) -> list[str]:
    """The outputs of every run of one guide command, in order."""
    return [step.output for step in steps if step.guide == guide and step.run is not None]


def kubectl_or_curl(command: str) -> bool:
    """A kubectl or curl command of the guide (also as `VAR=$(kubectl ...)`, or its alias `k`)."""
    return bool(re.match(r"^([A-Z_]+=\$\()?(kubectl|k|curl) ", command))


def report(steps: list[Step]) -> str:
    """How many of the guide's commands ran verbatim, and which were substituted or skipped, and why."""
    counts = {kind: sum(s.kind == kind for s in steps) for kind in ("verbatim", "substituted", "skipped")}
    api = [s for s in steps if kubectl_or_curl(s.guide)]
    out = [f"the guide's {len(steps)} commands: {counts['verbatim']} ran verbatim, "
           f"{counts['substituted']} substituted, {counts['skipped']} skipped; of its {len(api)} kubectl/curl "
           f"commands {sum(s.kind == 'verbatim' for s in api)} ran verbatim",
           "set up first: " + "; ".join(f"`{c}` ({why})" for c, why in PREAMBLE)]
    for i, step in enumerate(steps):
        status = "ok" if step.code == 0 else "-" if step.run is None else f"exit {step.code}"
        out.append(f"{i:>2} {step.kind:<11} {status:<7} {step.guide}")
        if step.kind != "verbatim":
            out.append(f"{'':>22}-> {step.run or '(not run)'}")
            out.append(f"{'':>22}   because {step.reason}")
    return "\n".join(out)


# Lines the notebooks print that fetch models from the internet (not kubectl/curl/mc): not run here.
DOWNLOADS = re.compile(r"^(\./gsutil |wget |TMP=\$\(mktemp|\(cd \$TMP|mv \$TMP|\(cd /tmp && tar |mv /tmp/inception)")
# Lines whose exit status is their answer (the doctor exits 1 when it names a problem): pasted once.
ANSWERS = re.compile(r"^python -m helpers\.doctor ")
# Lines that run until stopped (a reader gives them a terminal of their own).
FOREGROUND = re.compile(r"^kubectl (-n \S+ )?port-forward ")


@dataclass
class Block:
    """One shell block a notebook printed (core.show.show_shell): its `# label` line and its commands."""

    notebook: str
    label: str
    commands: list[str]


def shown_blocks(path: Path) -> list[Block]:
    """The labelled shell blocks of one executed notebook, in order: an output whose first line is
    `# <label>` and that has `$ ` lines. Continued lines (`\\`) are joined; comment lines are left out."""
    from support.walkthroughs import read_notebook  # the kubernetes client and the stack, only when needed

    found = []
    for cell in read_notebook(path).cells:
        for output in cell.get("outputs", []):
            text = output.get("text") or (output.get("data") or {}).get("text/plain") or ""
            if not (text.startswith("# ") and "\n$ " in text):
                continue
            label, *lines = text.splitlines()
            commands, command = [], ""
            for line in lines:
                if command and command.endswith("\\"):
                    command = command[:-1].rstrip() + " " + line.strip()
                elif line.startswith("$ "):
                    if command:
                        commands.append(command)
                    command = line[2:]
                elif command:
                    commands.append(command)
                    command = ""
            if command:
                commands.append(command)
            found.append(Block(path.stem, label[2:], commands))
    return found


def notebook_commands(executed: list[Path]) -> list[str]:
    """The shell lines (`$ ...`, continuations joined) the executed notebooks show as commands to paste."""
    return [command for path in executed for block in shown_blocks(path) for command in block.commands]


class Shell:
    """One bash a reader keeps open beside the notebooks: variables (`SERVER`, `MODEL_NAME`) and `cd`
    carry from one pasted line to the next, and from one notebook to the next.

    `run` pastes one line and returns (exit code, output). The cluster answers some lines only after a
    while (a TrainedModel applied a moment ago is Ready seconds later, as for a reader who pastes
    it), so a failing line is pasted again until `patience` seconds have passed; the last answer counts.
    """

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        import queue
        import threading

        self.process = subprocess.Popen(["bash", "--noprofile", "--norc"], cwd=workdir, env=env, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        start_new_session=True)  # close() ends what it left running too
        self.lines: queue.Queue = queue.Queue()
        self.count = 0

        def read() -> None:  # a thread: readline on a pipe blocks, and select() cannot see Python's buffer
            assert self.process.stdout
            for got in self.process.stdout:
                self.lines.put(got)
            self.lines.put(None)

        threading.Thread(target=read, daemon=True).start()

    def paste(self, line: str, timeout: float = 300) -> tuple[int, str]:
        import queue
        import time

        self.count += 1
        mark = f"{_MARK} {self.count} rc="
        assert self.process.stdin
        # A group, not a subshell: an assignment or `cd` stays; stdin is not the script's.
        self.process.stdin.write(f"{{\n{line}\n}} </dev/null 2>&1\nprintf '\\n{mark}%s\\n' $?\n")
        self.process.stdin.flush()
        lines, deadline = [], time.monotonic() + timeout
        while True:
            try:
                got = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise TimeoutError(f"`{line}` did not finish in {timeout:.0f}s; its output so far: "
                                   f"{''.join(lines)[-500:]}") from None
            if got is None:
                raise RuntimeError(f"bash exited while running `{line}`: {''.join(lines)[-500:]}")
            if got.startswith(mark):
                return int(got[len(mark):]), "".join(lines)[:-1]  # less the newline printf adds
            lines.append(got)

    def run(self, line: str, patience: float = 0) -> tuple[int, str]:
        import time

        deadline = time.monotonic() + patience
        while True:
            code, output = self.paste(line)
            if code == 0 or time.monotonic() >= deadline:
                return code, output
            time.sleep(2)

    def close(self) -> None:
        """Exit the shell, and stop what it left running (a `kubectl port-forward ... &`)."""
        import os
        import signal

        if self.process.poll() is None:
            assert self.process.stdin
            self.process.stdin.close()
            self.process.wait(timeout=30)
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def write_files(stack, workdir: Path, requests_dir: Path) -> None:
    """What the guide's reader has in their folder: the YAML files (rendered with the guide's settings:
    mms, triton-mms, bucket triton, the stack's keys), and the request bodies the walkthrough wrote."""
    import os
    import shutil

    import yaml

    from helpers.clients import manifests

    creds = stack.s3_credentials()
    values = dict(namespace="mms", owner="user@example.com", api_group="serving.kubeflow.org",
                  server_name="triton-mms", bucket="triton", s3_endpoint="minio-service.kubeflow:9000",
                  access_key=creds.access_key, secret_key=creds.secret_key)
    for name, extra in (("profile", {}), ("s3_secret", {}), ("external_service", {}),
                        ("multi_model_triton_server", {}), ("trained_model1", {"model_name": "cifar10"}),
                        ("trained_model2", {"model_name": "inception"}), ("trainedmodel_editor", {})):
        docs = manifests.render(name, **values, **extra)
        fd = os.open(workdir / f"{name}.yaml", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            yaml.safe_dump_all(docs, out, sort_keys=False)
    for body in requests_dir.glob("*.json"):
        if body.parent.resolve() != workdir.resolve():
            shutil.copy(body, workdir / body.name)


def shell_env(stack) -> dict[str, str]:
    import os

    return {**os.environ, "MMS_STATE_DIR": str(stack.root),
            "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}


def cleanup(stack) -> None:
    """Delete what `kubectl expose pod ... --name serving-service` made, so the sequence runs again."""
    subprocess.run(["kubectl", "--kubeconfig", str(stack.kubeconfig), "delete", "service", "serving-service",
                    "-n", "mms", "--ignore-not-found"], capture_output=True, timeout=60)


def run_on_stack(stack, kube, requests_dir: Path, workdir: Path) -> list[Step]:
    """The guide's files in `workdir`, then its commands planned and run there."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    write_files(stack, workdir, requests_dir)
    try:
        client.ApiextensionsV1Api(kube).read_custom_resource_definition("inferenceservices.serving.kserve.io")
        both = True
    except ApiException:
        both = False
    ingress = stack.env().get("MMS_INGRESS_URL", "")
    try:
        profile = stack.profile()
        guarded = bool(profile.gateway_auth) and not profile.kfserving_gateway  # the guide's curl: kfserving-ingressgateway
        return run(plan(commands(), both, ingress, guarded, profile.kfserving_gateway), workdir, shell_env(stack))
    finally:
        cleanup(stack)


class Reader:
    """A reader beside the walkthrough: one bash open in their folder (the guide's YAML files saved there,
    where 03 and 04 write the request bodies), and after each notebook every shell block it printed
    pasted into it, line by line, in order, before the next notebook runs."""

    def __init__(self, stack, folder: Path, known_failing: Sequence[str] = ()) -> None:
        """`known_failing`: patterns of lines known not to run (each with its reason, in the test): pasted
        once, without waiting for the cluster to come round."""
        self.stack, self.folder, self.known_failing = stack, folder, list(known_failing)
        folder.mkdir(parents=True, exist_ok=True)
        write_files(stack, folder, folder)
        self.shell = Shell(folder, shell_env(stack))
        for command, why in PREAMBLE:
            code, output = self.shell.run(command)
            assert code == 0, (command, why, output)
        self.steps: list[Step] = []
        self.ingress = stack.env()["MMS_INGRESS_URL"]

    def as_run(self, line: str) -> Optional[str]:
        if DOWNLOADS.match(line):
            return None  # a model download: no internet here
        if FOREGROUND.match(line) and not line.rstrip().endswith("&"):
            # It runs until stopped: a reader gives it a terminal of its own; here it runs in the background.
            line = f"{{\n{line}\n}} >/dev/null 2>&1 &\nsleep 3"
        # Port 80 may be another stack's gateway (parallel runs): the line below it reaches this one.
        return line.replace("http://${CLUSTER_IP}/", "${MMS_INGRESS_URL}/") if self.ingress != "http://127.0.0.1" else line

    def paste_blocks(self, run) -> None:
        """After the notebook of `run` (a helpers.tools.walkthrough.Run): each line of each block it printed."""
        for block in shown_blocks(run.output):
            for line in block.commands:
                step = Step(line, self.as_run(line), "a model download", notebook=run.notebook, label=block.label)
                if step.run is not None:
                    once = ANSWERS.match(line) or any(re.search(pattern, line) for pattern in self.known_failing)
                    step.code, step.output = self.shell.run(step.run, patience=0 if once else 60)
                self.steps.append(step)

    def close(self) -> None:
        self.shell.close()
        cleanup(self.stack)  # what the guide's `kubectl expose pod` made


if __name__ == "__main__":
    for i, command in enumerate(commands()):
        print(f"{i:>2} {command}", file=sys.stdout)
