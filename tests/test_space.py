"""The app as a Hugging Face Space: its file set, its card's settings, and a fresh install that answers.

The slow test does what a Space does: it takes exactly the files of ``publish.space.SPACE_FILES``,
installs ``requirements.txt`` alone into a new virtual environment, starts ``python app.py`` with
``GRADIO_SERVER_NAME=0.0.0.0`` and asks ``/predict`` about a real example. It needs the package
registry (or a pip cache / local wheels holding every pinned package) and skips when the registry
cannot be reached.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from gradio_client import Client, handle_file

from dermfuse import vocab
from dermfuse.sources import DEFAULT_MODEL, MODEL_ENV
from dermfuse.ui.examples import EXAMPLES, real_examples
from publish.space import ROOT, SPACE_FILES, assemble_space, space_files
from app_harness import free_port, serving

TOP_LEVEL = {"README.md", "requirements.txt", "app.py", "dermfuse", "checkpoints", "examples"}
INSTALL_TIMEOUT_S = 1800  # torch and its CUDA libraries are a few GB to unpack on a 2-core machine


def front_matter(readme: Path) -> dict:
    """The YAML between the README's opening ``---`` lines: the Space's settings."""
    match = re.match(r"---\n(.*?)\n---\n", readme.read_text(encoding="utf-8"), re.S)
    assert match, f"{readme} has no front matter"
    return yaml.safe_load(match.group(1))


def pinned(requirement: str) -> str:
    """The version ``requirements.txt`` pins for package ``requirement``."""
    text = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    match = re.search(rf"^{re.escape(requirement)}==(\S+)$", text, re.M)
    assert match, f"requirements.txt does not pin {requirement}"
    return match.group(1)


def test_the_space_holds_the_app_its_package_models_and_examples_and_nothing_else():
    files = space_files()
    assert {name.split("/")[0] for name in files} == TOP_LEVEL  # no tests, training code, .venv or runs
    package = {p.relative_to(ROOT).as_posix() for p in (ROOT / "dermfuse").rglob("*.py")}
    assert package <= set(files) and not [name for name in files if "__pycache__" in name or name.endswith(".pyc")]
    for model in ("dermfuse-small-ham10000", "dermfuse-tiny-phantom"):
        assert {f"checkpoints/{model}/config.json", f"checkpoints/{model}/model.safetensors"} <= set(files)
    assert {f"examples/{p.name}" for p in EXAMPLES.iterdir()} <= set(files)


def test_the_readme_names_the_space_files_and_its_card_matches_the_requirements():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Put the app on a Hugging Face Space"):]
    section = section[:section.index("\n## ")]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert rows == [f"| `{pattern}` | {why} |" for pattern, why in SPACE_FILES]  # README and code cannot disagree
    assert "hf upload USER/SPACE . --repo-type=space" in section and "python -m publish.space" in section
    card = front_matter(ROOT / "README.md")
    assert card["sdk"] == "gradio" and card["app_file"] == "app.py" and str(card["python_version"]) == "3.11"
    assert str(card["sdk_version"]) == pinned("gradio")


def test_assembling_copies_exactly_the_space_files_into_a_new_folder(tmp_path):
    space = tmp_path / "space"
    files = assemble_space(space)
    assert sorted(p.relative_to(space).as_posix() for p in space.rglob("*") if p.is_file()) == files == space_files()
    assert (space / "app.py").read_bytes() == (ROOT / "app.py").read_bytes()
    with pytest.raises(ValueError, match="is not empty"):
        assemble_space(space)


def registry_reachable(index: str) -> bool:
    """Whether the package index answers (its page for pip), so an install failure means a real fault."""
    try:
        with urllib.request.urlopen(index.rstrip("/") + "/pip/", timeout=15) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.mark.slow
def test_a_fresh_space_installs_from_its_requirements_alone_and_answers_predict(tmp_path):
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/")
    if not registry_reachable(index):
        pytest.skip(f"the package registry {index} cannot be reached, so the Space's requirements cannot be installed")
    space, venv = tmp_path / "space", tmp_path / "venv"
    assemble_space(space)
    started = time.monotonic()
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        python = venv / "bin" / "python"
        install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r", "requirements.txt"],
                                 cwd=space, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
        assert install.returncode == 0, f"pip install -r requirements.txt failed:\n{install.stderr[-4000:]}"
        installed = time.monotonic() - started
        pytest_found = subprocess.run([str(python), "-c", "import importlib.util as u; print(u.find_spec('pytest'))"],
                                      capture_output=True, text=True, check=True)
        assert pytest_found.stdout.strip() == "None"  # the test tools stayed out: requirements.txt alone

        # As a Space starts it: `python app.py` in the repository, host and port from the environment only.
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", MODEL_ENV)}
        env.update(GRADIO_SERVER_NAME="0.0.0.0", GRADIO_SERVER_PORT=str(port),
                   PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
        example = next(e for e in real_examples(space / "examples") if e.age is not None)
        with serving([python, "app.py"], f"http://127.0.0.1:{port}/", space, env, timeout_s=300) as app:
            answer = Client(app.url, verbose=False).predict(handle_file(example.path), example.age, example.sex,
                                                            example.site, api_name="/predict")  # fmt: skip
        print(f"fresh Space: venv + install {installed:.0f} s, in all {time.monotonic() - started:.0f} s")
    finally:
        for folder in (venv, space):  # a few GB: not left to pytest's rotation of tmp_path folders
            shutil.rmtree(folder, ignore_errors=True)
    assert answer["model"]["name"] == DEFAULT_MODEL
    assert answer["classes"] == list(vocab.HAM10000_CLASSES) and answer["lesion_found"]
    assert sum(answer["probabilities"]) == pytest.approx(1.0)
    assert answer["metadata"]["age"] == example.age and answer["metadata"]["sex"] == example.sex
