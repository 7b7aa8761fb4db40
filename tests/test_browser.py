"""The course in a real browser: JupyterLab, started as `make lab` starts it, driven by headless Chromium (Debian's
`chromium` package) through Playwright. For every notebook that shows a widget: run all cells, fail on any error
output, move one control of the first explorer, and check that the explorer's output changes. A screenshot of each
explorer before and after is kept outside the repository (``$PRUNING_BROWSER_ARTEFACTS``, by default
``$TMPDIR/pruning-browser``).

`make test` runs these tests in place of nbval for the widget notebooks (conftest.py leaves those notebooks to this
file when ``PRUNING_BROWSER=1``), so the browser adds its own overhead only: a page load and a widget move per
notebook. Without Chromium or Playwright the tests are skipped, unless ``PRUNING_BROWSER=1`` says that they must
run (then they fail). The key checks are strict in the kernels here, as under nbval (``PRUNING_STRICT_CHECKS=1``
is inherited from the environment of the JupyterLab server)."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from pruning import reproduce

CHROMIUM = os.environ.get("PRUNING_CHROMIUM", "/usr/bin/chromium")
REQUIRED = os.environ.get("PRUNING_BROWSER") == "1"
#: The longest a notebook may take in the browser (the lab budget is 4 minutes alone; under `make test` two run at a
#: time, one thread each, and the slowest took about 7 minutes under nbval on the AVX2 machine).
RUN_TIMEOUT_S = 1200
#: The longest an explorer may take to redraw after its control moves.
REDRAW_TIMEOUT_S = 120
# Chromium as the machine's notes recommend on a closed network (without the background-networking flags it keeps
# trying to reach Google's hosts)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def widget_notebooks() -> list[str]:
    """The notebooks that show one of the course's explorers (or any ipywidget)."""
    return [path.name for path in reproduce.notebooks() if reproduce.shows_widget(path)]


def _missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install playwright; it drives the system's Chromium)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    """A JupyterLab server over a copy of the widget notebooks (the committed ones are never opened, so nothing can
    save outputs into them), autosave off, the app exposed to the page's scripts (`window.jupyterapp`)."""
    reason = _missing()
    if reason:
        if REQUIRED:
            pytest.fail(f"PRUNING_BROWSER=1 but {reason}")
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("lab")
    root = work / "notebooks"
    root.mkdir()
    for name in widget_notebooks():
        shutil.copy(reproduce.NOTEBOOKS / name, root / name)
    _write_selftests(root / "selftest")
    # autosave off; every cell drawn (JupyterLab otherwise draws only the cells near the view, and a widget below it
    # would not be in the page)
    for plugin, values in {"docmanager-extension/plugin": {"autosave": False},
                           "notebook-extension/tracker": {"windowingMode": "none"}}.items():
        path = work / "settings" / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    token, port = secrets.token_hex(16), _free_port()
    command = [sys.executable, "-m", "jupyter", "lab", str(root), "--no-browser", f"--port={port}", "--ip=127.0.0.1",
               f"--IdentityProvider.token={token}", "--LabApp.expose_app_in_browser=True",
               f"--LabApp.user_settings_dir={work / 'settings'}", f"--LabApp.workspaces_dir={work / 'workspaces'}",
               "--ServerApp.disable_check_xsrf=True", "--LabApp.news_url=", "--LabApp.check_for_updates_class="
               "jupyterlab.NeverCheckForUpdate"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(work / "config"), "JUPYTER_RUNTIME_DIR": str(work / "runtime")}
    log = (work / "lab.log").open("w")
    server = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start; its log:\n{(work / 'lab.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield {"url": url, "token": token}
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="session")
def browser(lab):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def artefacts() -> Path:
    path = Path(os.environ.get("PRUNING_BROWSER_ARTEFACTS") or Path(tempfile.gettempdir()) / "pruning-browser")
    path.mkdir(parents=True, exist_ok=True)
    return path


# JavaScript run in the page: the state of the open notebook, read from its model (every cell's outputs and
# execution count, and the kernel's status).
_STATE = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.content || !panel.sessionContext) return null;
  const cells = panel.content.widgets.map(c => c.model);
  const code = cells.filter(m => m.type === 'code');
  const errors = [];
  code.forEach((m, i) => {
    const outs = m.outputs.toJSON();
    outs.forEach(o => { if (o.output_type === 'error') errors.push({cell: m.id, ename: o.ename, evalue: o.evalue}); });
  });
  return {kernel: panel.sessionContext.session && panel.sessionContext.session.kernel
                  ? panel.sessionContext.session.kernel.status : 'none',
          pending: code.filter(m => m.executionState === 'running' || m.executionState === 'queued').length,
          unrun: code.filter(m => m.executionCount === null).length, total: code.length, errors: errors};
}"""


def _open(page, lab: dict, name: str) -> None:
    page.goto(f"{lab['url']}/lab/tree/{name}?token={lab['token']}&reset", wait_until="domcontentloaded")
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget && "
                           "window.jupyterapp.shell.currentWidget.sessionContext && "
                           "window.jupyterapp.shell.currentWidget.sessionContext.isReady", timeout=120_000)
    page.wait_for_function("() => { const s = window.jupyterapp.shell.currentWidget.sessionContext.session; "
                           "return s && s.kernel && s.kernel.status === 'idle'; }", timeout=120_000)


def _run_all(page, name: str) -> dict:
    """Run every cell as a student's "Run All" does, and wait until the kernel is done or a cell failed."""
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        time.sleep(2)
        state = page.evaluate(_STATE)
        if state["errors"]:
            return state
        if state["kernel"] == "idle" and state["pending"] == 0 and state["unrun"] == 0:
            return state
        if time.monotonic() > deadline:
            pytest.fail(f"{name}: not done after {RUN_TIMEOUT_S} s in the browser: {state}")


def _signature(explorer) -> str:
    """What the explorer shows: the images and text of its output area."""
    out = explorer.locator(".widget-output").first
    return out.evaluate("e => Array.from(e.querySelectorAll('img')).map(i => i.src.length + ':' + i.src.slice(-200))"
                        ".join('|') + '#' + e.innerText")


def _move(explorer) -> str:
    """Move one control of an explorer, its first slider if it has one, else its dropdown, toggle buttons or checkbox;
    say which and how."""
    handle = explorer.locator(".noUi-handle")
    if handle.count():                                     # an ipywidgets 8 slider: one step, left if at its right end
        knob = handle.first
        knob.focus()
        before = knob.get_attribute("aria-valuenow")
        knob.press("ArrowRight")
        if knob.get_attribute("aria-valuenow") != before:
            return "slider: one step to the right"
        knob.press("ArrowLeft")
        assert knob.get_attribute("aria-valuenow") != before, "the explorer's slider did not move either way"
        return "slider: one step to the left"
    select = explorer.locator("select")
    if select.count():                                     # a dropdown
        options = select.first.locator("option").all_inner_texts()
        current = select.first.evaluate("e => e.options[e.selectedIndex].text")
        choice = next(o for o in options if o != current)
        select.first.select_option(label=choice)
        return f"dropdown: {current!r} -> {choice!r}"
    others = explorer.locator(".widget-toggle-buttons button:not(.mod-active)")
    if others.count():                                     # toggle buttons: press one that is not pressed
        label = others.first.inner_text()
        others.first.click()
        return f"toggle buttons: {label!r}"
    button = explorer.locator("button.widget-toggle-button")
    if button.count():                                     # a single toggle button
        button.first.click()
        return "toggle button"
    checkbox = explorer.locator("input[type=checkbox]")
    if checkbox.count():
        checkbox.first.click()
        return "checkbox"
    raise AssertionError("the explorer has no control this test knows how to move (slider, dropdown, toggle, checkbox)")


def _explorer(page):
    """The first explorer in the notebook: a VBox of controls above an Output area (pruning.widgets.Explorer)."""
    boxes = page.locator(".jp-OutputArea-output .widget-vbox:has(.widget-output)")
    assert boxes.count(), "no explorer (controls above an output area) was rendered in the page"
    return boxes.first


def check_in_browser(browser, lab, name: str, redraw_timeout: float = REDRAW_TIMEOUT_S) -> str:
    """Open notebook ``name`` (a path under the server's root) in JupyterLab, run all cells, fail on any error
    output, move one control of the first explorer (see _move) and check that its output changes. Returns how it was moved."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page_errors = []
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    try:
        _open(page, lab, name)
        state = _run_all(page, name)
        assert not state["errors"], f"{name}: a cell failed in the browser: {state['errors'][0]}"
        assert not page_errors, f"{name}: the page raised: {page_errors[:3]}"
        explorer = _explorer(page)
        explorer.scroll_into_view_if_needed()
        explorer.locator(".widget-output img").first.wait_for(timeout=redraw_timeout * 1000)
        stem = Path(name).stem
        explorer.screenshot(path=str(artefacts() / f"{stem}.before.png"))
        before = _signature(explorer)
        how = _move(explorer)
        deadline = time.monotonic() + redraw_timeout
        while _signature(explorer) == before or not explorer.locator(".widget-output img").count():
            assert time.monotonic() < deadline, f"{name}: the explorer's output did not change after moving its {how}"
            time.sleep(0.5)
        time.sleep(1)                                     # let the new figure paint before the screenshot
        explorer.screenshot(path=str(artefacts() / f"{stem}.after.png"))
        state = page.evaluate(_STATE)
        assert not state["errors"], f"{name}: the explorer raised after its {how}: {state['errors'][0]}"
        assert not page.get_by_text("Error displaying widget").count(), f"{name}: a widget failed to display"
        return how
    finally:
        _shutdown_kernels(lab)
        context.close()


def _shutdown_kernels(lab: dict) -> None:
    """Stop every kernel of the server (one notebook per server at a time), so that none keeps a core busy."""
    with urllib.request.urlopen(f"{lab['url']}/api/kernels?token={lab['token']}", timeout=30) as r:
        kernels = json.load(r)
    for k in kernels:
        urllib.request.urlopen(urllib.request.Request(f"{lab['url']}/api/kernels/{k['id']}?token={lab['token']}",
                                                      method="DELETE"), timeout=30)


def _write_selftests(folder: Path) -> None:
    """Tiny notebooks that show what the check does: an explorer that redraws (passes), the same with its slider at
    its right end (moved left, passes) and with toggle buttons (passes), one whose control changes nothing (fails),
    one with a failing cell (fails)."""
    import nbformat
    folder.mkdir()
    explorer = ("%matplotlib inline\nimport ipywidgets as W, matplotlib.pyplot as plt\nfrom pruning.widgets import Explorer\n"
                "class Tiny(Explorer):\n    def __init__(self):\n        self.s = W.IntSlider(value=1, min=1, max=5)\n"
                "        super().__init__([self.s])\n    def update(self):\n        plt.plot(range({}))\nTiny()")
    cases = {"redraws": [explorer.format("self.s.value + 1"), "print('done')"],
             "at_its_end": [explorer.format("self.s.value + 1").replace("value=1,", "value=5,")],
             "toggles": [explorer.format("2 + len(self.s.value)").replace(
                 "W.IntSlider(value=1, min=1, max=5)", "W.ToggleButtons(options=['a', 'bb'], value='a')")],
             "frozen": [explorer.format("3")],
             "fails": ["x = 1", "raise ValueError('a key check missed')", "print('never')"]}
    for name, cells in cases.items():
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, folder / f"{name}.ipynb")


def test_the_browser_check_passes_a_live_explorer_and_fails_a_frozen_one_or_an_error(browser, lab):
    assert check_in_browser(browser, lab, "selftest/redraws.ipynb") == "slider: one step to the right"
    assert check_in_browser(browser, lab, "selftest/at_its_end.ipynb") == "slider: one step to the left"
    assert check_in_browser(browser, lab, "selftest/toggles.ipynb") == "toggle buttons: 'bb'"
    with pytest.raises(AssertionError, match="did not change after moving its slider"):
        check_in_browser(browser, lab, "selftest/frozen.ipynb", redraw_timeout=10)
    with pytest.raises(AssertionError, match="a cell failed in the browser.*a key check missed"):
        check_in_browser(browser, lab, "selftest/fails.ipynb")


class _InTheBrowser:
    """One notebook's browser test. Each notebook gets a class of its own (below) rather than a parameter, because
    `make test` distributes tests by module and class (pytest-xdist --dist loadscope): so the notebooks' browser
    tests spread over both workers, as their nbval runs do. (Its --dist loadgroup would group them by mark, but with
    pytest 9.2 it silently groups nothing: pytest-xdist issue #1386.)"""

    notebook = ""

    def test_runs_and_its_explorer_responds(self, browser, lab):
        check_in_browser(browser, lab, self.notebook)


for _name in widget_notebooks():
    _test = f"TestInTheBrowser_{Path(_name).stem}"
    globals()[_test] = type(_test, (_InTheBrowser,), {"notebook": _name})
