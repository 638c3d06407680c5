"""The app as a Hugging Face Space: exactly which files it needs, copied into a folder of their own.

    python -m publish.space ../dermfuse-space      # a new folder holding only the Space's files
    cd ../dermfuse-space && hf upload USER/SPACE . --repo-type=space   # creates the Gradio Space if needed

A Space runs ``app.py`` from a checkout of its repository with the packages of ``requirements.txt``;
nothing is pip-installed from here, so the package travels as source. ``SPACE_FILES`` is the one list
of what that takes: the README shows it, this command copies it, and ``tests/test_space.py`` installs
and starts exactly that set. Uploading a copy, not the repository root, keeps tests, training code,
``.venv`` and local runs off the Space.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# (pattern, why the Space needs it): patterns are relative to the repository root.
SPACE_FILES: tuple[tuple[str, str], ...] = (
    ("README.md", "the Space's card: its front matter sets sdk gradio, sdk_version, python_version, app_file"),
    ("requirements.txt", "the packages the Space installs (runtime only, no test tools)"),
    ("app.py", "what the Space runs"),
    ("dermfuse/**/*", "the package, imported from the folder"),
    ("checkpoints/*/*", "the shipped models: weights, config and model card (the app's model menu)"),
    ("examples/*", "the CC0 example images and their table (the app's gallery)"),
)


def space_files(root: Path = ROOT) -> list[str]:
    """The Space's files, relative to ``root``, sorted; a pattern that matches nothing is an error."""
    files = set()
    for pattern, _ in SPACE_FILES:
        matched = {p.relative_to(root).as_posix() for p in root.glob(pattern) if p.is_file() and made_here(p, root)}
        if not matched:
            raise FileNotFoundError(f"no file in {root} matches {pattern!r}, which the Space needs: run this "
                                    "from a complete copy of the repository (checkpoints and examples included)")
        files |= matched
    return sorted(files)


def made_here(path: Path, root: Path) -> bool:
    """False for what running the code or an editor leaves behind (``__pycache__``, ``.pyc``, hidden files)."""
    parts = path.relative_to(root).parts
    return not any(part == "__pycache__" or part.startswith(".") for part in parts) and path.suffix != ".pyc"


def assemble_space(folder: Path, root: Path = ROOT) -> list[str]:
    """Copy the Space's files from ``root`` into ``folder`` (new or empty); return them."""
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise ValueError(f"{folder} is not empty: give a new folder, so nothing but the Space's files is uploaded")
    files = space_files(root)
    for name in files:
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target)
    return files


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m publish.space FOLDER   (a new folder outside the repository, "
                         "e.g. ../dermfuse-space), then: cd FOLDER && hf upload USER/SPACE . --repo-type=space")
    folder = Path(args[0])
    files = assemble_space(folder)
    size = sum((folder / name).stat().st_size for name in files) / 2**20
    print(f"copied the Space's {len(files)} files ({size:.0f} MiB) into {folder}; upload them with\n"
          f"  cd {folder} && hf upload USER/SPACE . --repo-type=space")
    return 0


if __name__ == "__main__":
    sys.exit(main())
