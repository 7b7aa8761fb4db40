"""The ways to launch the course agree with each other and with the repository URL in pyproject.toml.

These tests parse the committed files (pyproject.toml, README.md, environment.yml, postBuild, every
notebooks/*.ipynb and lessons/*.md), so a notebook added without its Colab link, a notebook committed with
outputs, or a fork that changes the URL in pyproject.toml without updating the links makes them fail, naming
what to fix.
"""

import json
import re
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
LESSONS = sorted((ROOT / "lessons").glob("[0-9][0-9]_*.md"))
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
BINDER_BADGE = "https://mybinder.org/badge_logo.svg"
SOLUTIONS_HEADING = "## Exercise solutions (for teachers)"


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def repo_url() -> str:
    urls = pyproject()["project"]["urls"]
    assert urls["Repository"] == urls["Homepage"], "pyproject.toml: Homepage and Repository should be the same URL"
    url = urls["Repository"]
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url), f"not a GitHub repository URL: {url}"
    return url


def github_slug() -> str:
    """``owner/name`` of the course repository."""
    return repo_url().removeprefix("https://github.com/")


def colab_url(notebook: str) -> str:
    return f"https://colab.research.google.com/github/{github_slug()}/blob/main/notebooks/{notebook}"


def binder_url() -> str:
    return f"https://mybinder.org/v2/gh/{github_slug()}/main?urlpath=lab/tree/lessons/README.md"


def badge_links(text: str, badge: str) -> list[str]:
    """Targets of the markdown image links ``[![...](badge)](target)`` in ``text``."""
    return re.findall(r"\[!\[[^\]]*\]\(" + re.escape(badge) + r"\)\]\(([^)\s]+)\)", text)


def source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def notebook_problems(nb: dict, name: str) -> list[str]:
    """What is wrong with notebook ``name`` (its parsed JSON ``nb``) as a launchable, clean notebook."""
    problems = []
    cells = nb["cells"]
    first_md = next((c for c in cells if c["cell_type"] == "markdown"), None)
    want = colab_url(name)
    if first_md is None or badge_links(source(first_md), COLAB_BADGE) != [want]:
        problems.append(f"{name}: its first markdown cell needs exactly one Colab badge, "
                        f"[![Open In Colab]({COLAB_BADGE})]({want})")
    code = [source(c) for c in cells if c["cell_type"] == "code"]
    # the first code cell runs before any import of the course package: it must be the Colab setup cell
    setup = code[0] if code else ""
    if ('if "google.colab" in sys.modules:' not in setup or "install -q git+{COURSE_REPO}" not in setup
            or re.findall(r'COURSE_REPO = "([^"]*)"', setup) != [repo_url()]):
        problems.append(f'{name}: the first code cell should be the Colab setup cell, installing with pip from '
                        f'COURSE_REPO = "{repo_url()}"')
    if any("COURSE_REPO" in s for s in code[1:]):
        problems.append(f"{name}: COURSE_REPO appears outside the setup cell")
    dirty = [i for i, c in enumerate(cells)
             if c["cell_type"] == "code" and (c.get("outputs") != [] or c.get("execution_count") is not None)]
    if dirty:
        problems.append(f"{name}: cells {dirty} have outputs or execution counts (clear them before committing)")
    return problems


def readme_problems(readme: str) -> list[str]:
    problems = []
    if badge_links(readme, BINDER_BADGE) != [binder_url()]:
        problems.append(f"README.md needs one Binder badge opening the course index, "
                        f"[![Binder]({BINDER_BADGE})]({binder_url()})")
    colab = badge_links(readme, COLAB_BADGE)
    if not colab:
        problems.append(f"README.md needs a Colab badge, [![Open In Colab]({COLAB_BADGE})]({colab_url(NOTEBOOKS[0].name)})")
    names = {p.name for p in NOTEBOOKS}
    for link in colab:
        name = link.rsplit("/", 1)[-1]
        if name not in names or link != colab_url(name):
            problems.append(f"README.md: Colab badge {link} should be {colab_url('<an existing notebook>')}")
    # every other mention of a launch service points at this repository too
    for link in re.findall(r"https://(?:mybinder\.org/v2/gh|colab\.research\.google\.com/github)/[^\s)>\]]+", readme):
        if f"/{github_slug()}/" not in link:
            problems.append(f"README.md: {link} does not point at {repo_url()}")
    return problems


def test_the_notebooks_are_found():
    assert len(NOTEBOOKS) >= 7 and all(p.name[:2].isdigit() for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_its_colab_link_and_setup_cell_and_no_outputs(path):
    assert notebook_problems(load(path), path.name) == []


def test_readme_has_binder_and_colab_badges():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme_problems(readme) == []
    assert (ROOT / "lessons" / "README.md").is_file()   # what the Binder badge opens
    assert repo_url() in readme


def test_the_checks_catch_a_fork_a_missing_badge_and_outputs():
    """The checks above are not vacuous: the real files altered the usual ways fail them."""
    path = NOTEBOOKS[0]
    nb = load(path)
    fork = json.loads(json.dumps(nb).replace(github_slug(), "someone/fork"))
    assert len(notebook_problems(fork, path.name)) == 2                # Colab link and COURSE_REPO
    assert len(notebook_problems(nb, "renamed.ipynb")) == 1            # the link names another file
    bare = json.loads(json.dumps(nb).replace(COLAB_BADGE, "https://example.org/badge.svg"))
    assert len(notebook_problems(bare, path.name)) == 1
    ran = json.loads(json.dumps(nb))
    code = next(c for c in ran["cells"] if c["cell_type"] == "code")
    code["execution_count"], code["outputs"] = 1, [{"output_type": "stream", "name": "stdout", "text": ["hi\n"]}]
    assert any("outputs" in p for p in notebook_problems(ran, path.name))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme_problems(readme.replace(github_slug(), "someone/fork"))) >= 2
    assert readme_problems(readme.replace("lab/tree/lessons/README.md", "lab/tree/notebooks"))
    assert readme_problems(readme.replace(COLAB_BADGE, "https://example.org/badge.svg"))


def environment_packages() -> dict[str, str]:
    """``{name: line}`` of the conda packages listed under ``dependencies:`` in environment.yml (plain-text
    parsing, so the test needs no YAML library)."""
    packages, inside = {}, False
    for line in (ROOT / "environment.yml").read_text(encoding="utf-8").splitlines():
        stripped = line.split("#", 1)[0].rstrip()
        if not stripped:
            continue
        if not line.startswith((" ", "-")):
            inside = stripped == "dependencies:"
            continue
        m = re.fullmatch(r"  - ([A-Za-z0-9_.\-]+)\s*(?:[=<>!].*)?", stripped)
        if inside and m:
            packages[m.group(1).lower().replace("_", "-")] = stripped
    return packages


def pip_install_args(text: str) -> list[list[str]]:
    """The arguments after ``pip install`` on every line of a Makefile or shell script, quiet flags dropped."""
    found = []
    for line in text.splitlines():
        m = re.search(r"-m pip install (.*)$", line)
        if m:
            found.append([a for a in m.group(1).split() if a not in ("--quiet", "-q")])
    return found


def test_binder_installs_what_ci_installs():
    """environment.yml brings Python and pip only; postBuild runs the very pip line `make test` runs for CI, so the
    one step CI does not exercise is conda installing a Python."""
    listed = environment_packages()
    assert set(listed) == {"python", "pip"}, f"environment.yml should list python and pip only, found {sorted(listed)}"
    project = pyproject()["project"]
    py = re.fullmatch(r"  - python\s*=+\s*(\d+)\.(\d+).*", listed["python"])
    low = re.fullmatch(r">=\s*(\d+)\.(\d+)", project["requires-python"])
    assert py and low and (int(py[1]), int(py[2])) >= (int(low[1]), int(low[2]))
    make = [a for a in pip_install_args((ROOT / "Makefile").read_text(encoding="utf-8")) if "-e" in a]
    binder = pip_install_args((ROOT / "postBuild").read_text(encoding="utf-8"))
    assert len(make) == 1 and binder == make, f"postBuild installs {binder}, make test installs {make}"
    # the comparison can fail: another extra, or no constraints, is a different route
    assert pip_install_args('python -m pip install -e ".[lab]"') != make


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_lesson_points_to_its_solutions_kept_apart(path):
    """Solutions live in lessons/solutions/, one page per lesson; the lesson's section is a pointer only."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if SOLUTIONS_HEADING not in lines:
        pytest.skip(f"{path.name} has no exercise solutions")
    start = lines.index(SOLUTIONS_HEADING) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    body = [line for line in lines[start:end] if line.strip()]
    target = f"solutions/{path.name}"
    assert len(body) == 1 and f"]({target})" in body[0], (
        f"{path.name}: the solutions section should be one line linking to {target}, found {len(body)} lines")
    solutions = ROOT / "lessons" / target
    assert solutions.is_file()
    text = solutions.read_text(encoding="utf-8")
    assert f"](../{path.name})" in text and SOLUTIONS_HEADING in text


def test_every_solutions_page_has_a_lesson_and_no_notebook_links_to_them():
    pages = sorted((ROOT / "lessons" / "solutions").glob("*.md"))
    assert pages and all((ROOT / "lessons" / p.name).is_file() for p in pages)
    for path in NOTEBOOKS:
        for cell in load(path)["cells"]:
            text = source(cell)
            assert "solutions/" not in text and "#exercise-solutions" not in text, (
                f"{path.name}: notebooks point students to the lesson, not to the teachers' solutions")


def test_the_glossary_defines_the_words_the_issue_names_and_is_linked():
    text = (ROOT / "lessons" / "glossary.md").read_text(encoding="utf-8")
    for term in ("One-cycle", "Cosine schedule", "(mu + lambda) evolution", "Spearman", "PFEC", "Kaiming",
                 "Rademacher", "Empirical Fisher", "HOOI", "VBMF", "McNemar"):
        headings = [h.lower() for h in re.findall(r"\*\*(.+?)\*\*", text)]
        assert any(term.lower() in h for h in headings), f"the glossary has no entry for {term}"
    assert "](glossary.md)" in (ROOT / "lessons" / "README.md").read_text(encoding="utf-8")


MODEL_LINE = re.compile(r"^\s*\w+ = (?:zoo\.pretrained|detector\.pretrained|my_model|models\.ConvNet)\(.*$", re.M)


def device_problems(nb: dict, name: str) -> list[str]:
    """The notebook sets DEVICE once, in the setup cell (the one that seeds), from core.default_device(), and every
    line that builds or loads the notebook's model moves it there."""
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    setup = [s for s in code if "train.seed_everything(SEED)" in s]
    problems = []
    if not setup or "DEVICE = core.default_device()" not in setup[0]:
        problems.append(f"{name}: its setup cell does not set DEVICE = core.default_device()")
    if sum(s.count("DEVICE = ") for s in code) != 1:
        problems.append(f"{name}: DEVICE is to be set once, in the setup cell")
    lines = [m.group(0).strip() for s in code for m in MODEL_LINE.finditer(s)]
    if not lines:
        problems.append(f"{name}: no line that builds or loads a model was found")
    problems += [f"{name}: `{line}` does not move the model to DEVICE" for line in lines if ".to(DEVICE)" not in line]
    return problems


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_its_model_on_the_gpu_when_there_is_one(path):
    assert device_problems(load(path), path.name) == []


def test_the_device_check_catches_a_model_left_on_the_cpu():
    cell = lambda s: {"cell_type": "code", "source": [s]}
    good = {"cells": [cell("train.seed_everything(SEED)\nDEVICE = core.default_device()\n"),
                      cell('model = zoo.pretrained("vgg16-cifar10").to(DEVICE)\n')]}
    assert device_problems(good, "good") == []
    left = {"cells": [good["cells"][0], cell('model = zoo.pretrained("vgg16-cifar10")\n')]}
    assert any("does not move" in p for p in device_problems(left, "left"))
    unset = {"cells": [cell("train.seed_everything(SEED)\n"), good["cells"][1]]}
    assert any("setup cell" in p for p in device_problems(unset, "unset"))
