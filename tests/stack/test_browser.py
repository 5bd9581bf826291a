"""03_cifar10 and 05_lifecycle as a person sees them: JupyterLab in a real (headless) Chromium, against
the local stack.

Papermill runs 00-02 first (namespace, MinIO secret, the Triton server), as a learner would have.
Then a copy of the notebooks folder (never the committed one: a save would commit outputs) is
served by `helpers.tools.lab.start_lab`, Debian's Chromium opens 03_cifar10 through Playwright, waits
for the kernel, clicks Run > Run All Cells and waits until every cell has run. The assertions
read the page: the settings widgets rendered, no cell shows an error (from the notebook JupyterLab
saved: its DOM renders errors as plain stderr), the prediction plot is an image, no secret value
is on the page or in the saved notebook; then a bad value typed into the namespace widget makes
the next cell run fail with cause and fix, and the good value makes it pass. After it, papermill
runs 04 (05 needs both models in the server) and the browser opens 05_lifecycle and runs it the
same way: no error, its memory plot an image, no secret, and its results JSON saw the reload.
Screenshots of each run, scrolled panel by panel, go to build/screenshots/. A first, quick test
checks the server itself: 127.0.0.1 only, token required, news off, the environment reaching kernels.
"""
from __future__ import annotations

import contextlib
import json
import re
import shutil
import time
from pathlib import Path
from typing import Iterator

import pytest

try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout  # the dev extra pins it
except ImportError:  # collected without the dev extra: the browser tests skip
    PlaywrightTimeout = TimeoutError  # type: ignore[misc,assignment]
import requests

from helpers.core.config import build_dir
from helpers.core.constants import api_group
from helpers.core.resources import notebooks_dir
from helpers.core.wait import poll_until
from helpers.tools import walkthrough
from helpers.tools.lab import Lab, start_lab, stop_lab

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")  # Debian's; Playwright's own browser download is not possible here
# Quiet: no update checks, no sync, no first-run pages (connection noise in an offline sandbox).
CHROMIUM_FLAGS = ["--disable-background-networking", "--disable-component-update", "--no-first-run",
                  "--disable-sync"]
NOTEBOOK = "03_cifar10"
LIFECYCLE = "05_lifecycle"
PREREQUISITES = ("00_cluster_prep", "01_minio", "02_server")
BEFORE_LIFECYCLE = "04_inception"  # 05 reads both models' statistics
VIEWPORT = {"width": 1400, "height": 1000}
SHOTS = build_dir() / "screenshots"
# Explicit, generous timeouts (Playwright's own default is 5 s).
OPEN_TIMEOUT_MS = 60_000       # JupyterLab's page, the notebook, its kernel
RUN_TIMEOUT_MS = 240_000       # every cell of 03 (fetch, upload, TrainedModel, agent load, infer)
LIFECYCLE_TIMEOUT_MS = 420_000  # every cell of 05 (two uploads, a load, a reload, a refusal, a delete)

PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"

# Run All queues every code cell at once, each showing `[*]` until it ran; an error clears the queue
# (the rest go back to `[ ]`). So once the run has started, no `[*]` left means it is over.
RUN_OVER = """() => {
  const prompts = [...document.querySelectorAll('%s .jp-CodeCell .jp-InputPrompt')]
    .map(p => p.textContent.trim());
  return prompts.length > 0 && !prompts.some(p => p.includes('*'));
}""" % PANEL

NEXT_FRAME = "() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))"


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_made(stack, kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """00-02 run headless with the default settings: the namespace, the S3 secret, the Triton server.

    At the end the TrainedModels and the server are deleted again (and their processes waited
    for), so later tests start from the same state as without this one.
    """
    out_dir = tmp_path_factory.mktemp("browser-papermill")
    try:
        for name in PREREQUISITES:
            run = walkthrough.run_notebook(notebooks_dir() / f"{name}.ipynb", out_dir, {})
            assert run.ok, f"{name} failed before the browser test: {run.error} (see {run.output})"
            print(f"\npapermill {name}: {run.seconds:.1f}s", end="")
        yield out_dir
    finally:
        delete_server(stack, kube)


def delete_server(stack, kube) -> None:
    """Delete the TrainedModels (03-05) and the InferenceService (02); wait until their processes are gone."""
    from kubernetes import client

    custom = client.CustomObjectsApi(kube)
    group = api_group("serving.kubeflow.org")
    models = [tm["metadata"]["name"] for tm in custom.list_namespaced_custom_object(
        group.group, group.tm_version, "mms", "trainedmodels")["items"]]
    for version, plural, name in [*((group.tm_version, "trainedmodels", model) for model in models),
                                  (group.isvc_version, "inferenceservices", "triton-mms")]:
        try:
            custom.delete_namespaced_custom_object(group.group, version, "mms", plural, name)
        except client.exceptions.ApiException:
            pass
    records = stack.servers_dir / "mms.triton-mms" / "processes.json"
    poll_until(lambda: not records.exists(), "the local controller to stop the browser test's server", timeout=120)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of notebooks/ for JupyterLab to serve: what the browser saves never reaches the repo."""
    root = tmp_path_factory.mktemp("browser-workspace") / "notebooks"
    shutil.copytree(notebooks_dir(), root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    return root


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """JupyterLab's work folder; the notebooks it runs write results and plots to its `build/`."""
    return tmp_path_factory.mktemp("browser-lab")


@pytest.fixture(scope="module")
def lab(stack, server_made, workspace: Path, lab_dir: Path) -> Iterator[Lab]:
    # The stack's environment, as `make lab` exports it; results and plots of this run stay in the temp folder;
    # MMS_HEADLESS cleared so the notebook behaves as for a person (widgets on).
    env = {**stack.env(), "MMS_BUILD_DIR": str(lab_dir / "build"), "MMS_HEADLESS": "0"}
    server = start_lab(workspace, None, env, lab_dir)
    yield server
    stop_lab(server)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright  # the dev extra pins it

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install chromium` (make setup does it as root)")
    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


class Run:
    """What the browser did with one notebook: the page after Run All, the notebook JupyterLab saved,
    screenshots, page errors, how long it took."""

    def __init__(self, notebook: str, page, saved: Path, shots: list[Path], page_errors: list[str],
                 seconds: dict[str, float]) -> None:
        self.notebook = notebook
        self.page = page
        self.saved = saved
        self.shots = shots
        self.page_errors = page_errors
        self.seconds = seconds


@pytest.fixture(scope="module")
def run(lab: Lab, browser, workspace: Path) -> Iterator[Run]:
    with run_in_browser(lab, browser, workspace, NOTEBOOK, RUN_TIMEOUT_MS) as found:
        yield found


@pytest.fixture(scope="module")
def lifecycle_run(run: Run, server_made: Path, lab: Lab, browser, workspace: Path) -> Iterator[Run]:
    """05_lifecycle in the browser, after 03 ran there and 04 by papermill: both models are in the server."""
    done = walkthrough.run_notebook(notebooks_dir() / f"{BEFORE_LIFECYCLE}.ipynb", server_made, {})
    assert done.ok, f"{BEFORE_LIFECYCLE} failed before the browser test of 05: {done.error} (see {done.output})"
    with run_in_browser(lab, browser, workspace, LIFECYCLE, LIFECYCLE_TIMEOUT_MS) as found:
        yield found


@contextlib.contextmanager
def run_in_browser(lab: Lab, browser, workspace: Path, notebook: str, timeout_ms: int) -> Iterator[Run]:
    """Open `notebook` in JupyterLab, wait for its kernel, Run All Cells, wait until every cell ran, save it."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob(f"{notebook}-*.png"):
        old.unlink()
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(OPEN_TIMEOUT_MS)
    page = context.new_page()
    page_errors: list[str] = []
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))
    shots: list[Path] = []
    seconds: dict[str, float] = {}
    began = time.monotonic()
    try:
        # a workspace of its own, reset: only this notebook open, no layout restored from elsewhere
        page.goto(f"{lab.base_url}/lab/workspaces/browser-{notebook}/tree/{notebook}.ipynb?reset&token={lab.token}")
        page.wait_for_selector(f"{PANEL} .jp-Notebook .jp-Cell")
        wait_for_kernel_idle(page)
        seconds["open"] = time.monotonic() - began
        shots.append(screenshot(page, f"{notebook}-01-opened"))
        run_all_cells(page)
        try:
            page.wait_for_function(RUN_OVER, timeout=timeout_ms, polling=500)
        except PlaywrightTimeout:
            raise AssertionError(f"Run All of {notebook} did not finish within {timeout_ms // 1000}s: "
                                 f"{describe_run(page)}{dialog_text(page)}") from None
        seconds["run_all"] = time.monotonic() - began - seconds["open"]
        shots += scroll_screenshots(page, f"{notebook}-02-run")
        save_notebook(page, workspace / f"{notebook}.ipynb")
        yield Run(notebook, page, workspace / f"{notebook}.ipynb", shots, page_errors, seconds)
    except BaseException:
        with contextlib.suppress(Exception):
            shots.append(screenshot(page, f"{notebook}-99-failed"))  # what the page showed when it went wrong
        raise
    finally:
        context.close()


# --- page actions --------------------------------------------------------------------------------


def wait_for_kernel_idle(page) -> None:
    """Until the status bar says `<kernel> | Idle`: Run All before that (No Kernel) silently runs nothing."""
    try:
        page.wait_for_function(
            "() => /\\|\\s*Idle/.test(document.querySelector('#jp-main-statusbar')?.innerText || '')",
            timeout=OPEN_TIMEOUT_MS, polling=200)
    except PlaywrightTimeout:
        status = page.locator("#jp-main-statusbar").inner_text(timeout=1_000)
        raise AssertionError(f"the kernel never became idle (status bar: {status!r}){dialog_text(page)}") from None
    # A dialog (e.g. "Select Kernel") would swallow the Run All click: fail here, saying what it asks.
    assert not page.locator(".jp-Dialog").count(), f"a dialog is open{dialog_text(page)}"


def dialog_text(page) -> str:
    dialog = page.locator(".jp-Dialog")
    return f"; a dialog says: {' '.join(dialog.first.inner_text().split())!r}" if dialog.count() else ""


def describe_run(page) -> str:
    prompts = page.locator(f"{PANEL} .jp-CodeCell .jp-InputPrompt").evaluate_all(
        "els => els.map(el => el.textContent.trim())")
    return f"cell prompts {' '.join(prompts)}"


def run_all_cells(page) -> None:
    """Run > Run All Cells, clicked in the menu as a person does; returns once the first cell has started."""
    page.locator("#jp-MainMenu .lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    started = """() => [...document.querySelectorAll('%s .jp-CodeCell .jp-InputPrompt')]
                   .some(el => /\\[(\\*|\\d+)\\]/.test(el.textContent))""" % PANEL
    try:
        page.wait_for_function(started, timeout=OPEN_TIMEOUT_MS, polling=100)
    except PlaywrightTimeout:
        raise AssertionError(f"Run All started no cell: {describe_run(page)}{dialog_text(page)}") from None


def save_notebook(page, path: Path) -> None:
    """File > Save Notebook; waits until the copy on disk has the outputs."""
    before = path.stat().st_mtime_ns
    page.locator("#jp-MainMenu .lm-MenuBar-itemLabel", has_text=re.compile(r"^File$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Save Notebook$")).click()

    def saved_with_outputs() -> bool:
        if path.stat().st_mtime_ns == before:
            return False
        cells = json.loads(path.read_text())["cells"]
        return any(cell.get("outputs") for cell in cells)

    poll_until(saved_with_outputs, f"JupyterLab to save {path.name}", timeout=30)


def screenshot(page, label: str) -> Path:
    """`label` starts with the notebook's name: build/screenshots/<notebook>-<step>.png."""
    path = SHOTS / f"{label}.png"
    page.screenshot(path=str(path))
    return path


def scroll_screenshots(page, label: str) -> list[Path]:
    """The notebook scrolls inside its panel (a page screenshot is the window): one shot per screenful,
    from the top until the last cell is in view."""
    scroller = page.locator(f"{PANEL} .jp-WindowedPanel-outer").first
    step = max(200, int(scroller.evaluate("el => el.clientHeight") * 0.9))
    last_cell_shown = """el => {
      const cells = el.querySelectorAll('.jp-Cell');
      const last = cells[cells.length - 1];
      return !last || last.getBoundingClientRect().bottom <= el.getBoundingClientRect().bottom
             || el.scrollTop + el.clientHeight >= el.scrollHeight - 1;
    }"""
    shots: list[Path] = []
    for top in range(0, 200 * step, step):  # bounded: a runaway page cannot loop forever
        scroller.evaluate("(el, top) => { el.scrollTop = top; }", top)
        page.evaluate(NEXT_FRAME)
        shots.append(screenshot(page, f"{label}-{len(shots) + 1:02d}"))
        if scroller.evaluate(last_cell_shown):
            break
    return shots


def page_text(page) -> str:
    """Everything a person could read or copy: visible text, the notebook's DOM text, input values."""
    return page.evaluate("""() => [
        document.body.innerText,
        document.querySelector('%s')?.textContent || '',
        ...[...document.querySelectorAll('input, textarea, select')].map(el => el.value || ''),
    ].join('\\n')""" % PANEL)


def secrets_of(stack, lab: Lab) -> dict[str, str]:
    creds = stack.s3_credentials()
    token = stack.cp.tokens.read_text().split(",", 1)[0].strip()
    found = {"s3 access key": creds.access_key, "s3 secret key": creds.secret_key,
             "apiserver token": token, "JupyterLab token": lab.token}
    assert all(len(value) >= 8 for value in found.values())
    return found


# --- tests ---------------------------------------------------------------------------------------


def test_lab_server_is_local_private_and_quiet(tmp_path: Path) -> None:
    """start_lab: 127.0.0.1 only, the token required (and not on the command line), the news pop-up off,
    the given environment in every kernel, HOME inside the work folder; stop_lab stops the kernels too."""
    (tmp_path / "root").mkdir()
    server = start_lab(tmp_path / "root", None, {"KUBECONFIG": "/nowhere/kubeconfig"}, tmp_path / "work")
    kernel_pids: list[int] = []
    try:
        port = server.record.ports["http"]
        assert requests.get(f"{server.base_url}/api/status", timeout=5).status_code == 403
        assert server.api("/api/status").status_code == 200
        listening = [line.split()[1] for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                     if line.split()[3] == "0A"]  # state LISTEN; local address as hex ip:port
        assert f"0100007F:{port:04X}" in listening and f"00000000:{port:04X}" not in listening
        assert server.token not in Path(f"/proc/{server.record.pid}/cmdline").read_text()
        notification = server.api("/lab/api/settings/@jupyterlab/apputils-extension:notification").json()
        assert notification["schema"]["properties"]["fetchNews"]["default"] == "false"
        kernel = server.api("/api/kernels", "POST").json()
        assert kernel["name"] == "mms-notebooks"
        kernel_pids = poll_until(lambda: children(server.record.pid), "the kernel process", timeout=30)
        environ = dict(item.split("=", 1) for item in
                       Path(f"/proc/{kernel_pids[0]}/environ").read_text().split("\0") if "=" in item)
        assert environ["KUBECONFIG"] == "/nowhere/kubeconfig"
        assert environ["HOME"].startswith(str(tmp_path / "work"))
    finally:
        assert stop_lab(server)
    assert not server.record.alive() and all(not Path(f"/proc/{pid}").exists() for pid in kernel_pids)


def children(pid: int) -> list[int]:
    """PIDs whose parent is `pid` (the server's kernels run in sessions of their own, but are its children)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def assert_every_cell_ran(run: Run) -> None:
    # textContent: cells scrolled out of view have no innerText (content-visibility)
    prompts = run.page.locator(f"{PANEL} .jp-CodeCell .jp-InputPrompt").evaluate_all(
        "els => els.map(el => el.textContent.trim())")
    assert len(prompts) >= 10, prompts
    # The closing bookkeeping cell's input is collapsed (no prompt shown): the saved notebook says it ran.
    shown = [p for p in prompts if p]
    assert all(re.search(r"\[\d+\]", p) for p in shown), f"Run All stopped early (an error?): {prompts}"
    counts = [c.get("execution_count") for c in json.loads(run.saved.read_text())["cells"] if c["cell_type"] == "code"]
    assert all(counts), f"cells that did not run: {counts}"
    print(f"\nbrowser, {run.notebook}: opened in {run.seconds['open']:.1f}s, "
          f"Run All took {run.seconds['run_all']:.1f}s")


def assert_no_cell_shows_an_error(run: Run) -> None:
    # JupyterLab 4 renders an error output as `application/vnd.jupyter.stderr` (its error mime type has
    # no renderer), so the DOM cannot tell it from other stderr; the notebook it saved can.
    saved = json.loads(run.saved.read_text())
    errors = [f"cell {n}: {out['ename']}: {out['evalue']}" for n, cell in enumerate(saved["cells"])
              for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors, f"cells show errors: {errors}"
    outputs = run.page.locator(f"{PANEL} .jp-OutputArea-output").evaluate_all(
        "els => els.map(el => el.textContent)")
    assert not [o for o in outputs if "Traceback (most recent call last)" in o], "a raw traceback is shown"
    assert "Error displaying widget" not in page_text(run.page)


def assert_plots_are_images(run: Run, count: int) -> list:
    """At least `count` output images, each a loaded PNG; returns them."""
    images = run.page.locator(f"{PANEL} .jp-OutputArea-output img")
    assert images.count() >= count, f"expected {count} plots as images, found {images.count()}"
    for image in images.all():
        loaded = image.evaluate("img => img.complete && img.naturalWidth > 0")
        assert loaded and image.get_attribute("src").startswith("data:image/png"), image.get_attribute("src")[:40]
    return images.all()


def assert_no_secret(run: Run, stack, lab: Lab, shown: str, saved_shows: str) -> None:
    """No secret on the page or in the notebook JupyterLab saved (which does show `shown` and `saved_shows`)."""
    text = page_text(run.page)
    saved = run.saved.read_text()
    assert shown in text and saved_shows in saved
    for what, value in secrets_of(stack, lab).items():
        assert value not in text, f"the {what} is shown on the page of {run.notebook}"
        assert value not in saved, f"the {what} is in the {run.notebook} JupyterLab saved"


def assert_screenshots(run: Run) -> None:
    assert len(run.shots) >= 3
    for path in run.shots:
        assert path.stat().st_size > 10_000, path
    print(f"\nscreenshots: {SHOTS}/{run.notebook}-*.png ({len(run.shots)})")
    if run.page_errors:
        print("page errors:\n  " + "\n  ".join(run.page_errors))


def test_every_cell_ran(run: Run) -> None:
    assert_every_cell_ran(run)


def test_no_cell_shows_an_error(run: Run) -> None:
    assert_no_cell_shows_an_error(run)


def test_settings_widgets_rendered(run: Run) -> None:
    widgets = run.page.locator(f"{PANEL} .jp-OutputArea-output .jupyter-widgets")
    assert widgets.count() > 0, "no ipywidgets in any output"
    dropdowns = run.page.locator(f"{PANEL} .widget-dropdown select")
    texts = run.page.locator(f"{PANEL} .widget-text input")
    assert dropdowns.count() >= 2 and texts.count() >= 3
    values = {el.input_value() for el in texts.all()} | {el.input_value() for el in dropdowns.all()}
    assert {"local", "serving.kubeflow.org", "mms", "triton-mms", "triton"} <= values, values
    labels = run.page.locator(f"{PANEL} .widget-label").evaluate_all("els => els.map(el => el.textContent)")
    assert {"namespace", "bucket"} <= set(labels), labels


def test_prediction_plot_is_an_image(run: Run) -> None:
    images = assert_plots_are_images(run, 2)  # the agent timeline and the predictions plot
    # the last image is the predictions plot: wider than tall per row, and big enough to read
    width, height = images[-1].evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert width >= 600 and height >= 300, (width, height)


def test_no_secret_on_the_page_or_in_the_saved_notebook(run: Run, stack, lab: Lab) -> None:
    assert_no_secret(run, stack, lab, "cifar10", "OUTPUT__0")


def test_screenshots_saved(run: Run) -> None:
    assert_screenshots(run)


def test_a_widget_change_reaches_the_next_cell_run(run: Run) -> None:
    """Type a bad namespace in the settings widget, run a cell that reads the settings: it fails with
    the cause and the fix (no traceback); put the value back, run it again: it works."""
    page = run.page
    namespace = page.locator(f"{PANEL} .widget-text", has=page.locator("label", has_text=re.compile(r"^namespace$")))
    cell = page.locator(f"{PANEL} .jp-CodeCell", has=page.locator(".jp-InputArea", has_text="manifests.values_for(ctx"))
    namespace.locator("input").fill("Not_Valid")
    output = run_cell(page, cell)
    screenshot(page, f"{NOTEBOOK}-03-bad-setting")
    assert "namespace 'Not_Valid' is not a valid Kubernetes name" in output and "fix:" in output, output
    assert "Traceback" not in output, output
    namespace.locator("input").fill("mms")
    output = run_cell(page, cell)
    assert "kind: TrainedModel" in output and "Error" not in output, output


def run_cell(page, cell) -> str:
    """Select `cell` and press Shift+Enter; wait until it ran again; return its output text."""
    prompt = cell.locator(".jp-InputPrompt")
    before = prompt.text_content().strip()
    cell.scroll_into_view_if_needed()
    prompt.click()  # selects the cell in command mode
    page.keyboard.press("Shift+Enter")
    prompt_changed = """([el, before]) => { const now = el.textContent.trim();
                          return now !== before && /\\[\\d+\\]/.test(now); }"""
    page.wait_for_function(prompt_changed, arg=[prompt.element_handle(), before], timeout=OPEN_TIMEOUT_MS)
    return cell.locator(".jp-OutputArea").text_content()


# --- 05_lifecycle, after 03 ----------------------------------------------------------------------


def test_lifecycle_runs_every_cell_without_an_error(lifecycle_run: Run) -> None:
    assert_every_cell_ran(lifecycle_run)
    assert_no_cell_shows_an_error(lifecycle_run)
    assert_screenshots(lifecycle_run)


def test_lifecycle_memory_plot_is_an_image(lifecycle_run: Run) -> None:
    assert_plots_are_images(lifecycle_run, 1)


def test_lifecycle_shows_no_secret(lifecycle_run: Run, stack, lab: Lab) -> None:
    # the page shows the screenful Run All ended on (the recap names cifar10); the saved outputs, Triton's lines
    assert_no_secret(lifecycle_run, stack, lab, "cifar10", "successfully loaded 'cifar10-lifecycle'")


def test_lifecycle_results_saw_the_reload(lifecycle_run: Run, lab_dir: Path) -> None:
    found = json.loads((lab_dir / "build" / "results" / f"{LIFECYCLE}.json").read_text())
    assert found["reload"]["seen"] and found["old_version_gone"], found["reload"]
    assert found["deleted"]["absent_from_index"]
