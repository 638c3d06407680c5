"""Publish a stage-2 run's model: a self-contained folder (weights, config, card, metrics, split, figures), then the Hub.

    python -m train push --run=runs/cls --repo-id=USER/NAME            # needs `hf auth login`

``export`` builds the folder (by default ``<run>/publish``) with ``DermFuse.save_pretrained``
(``config.json`` + ``model.safetensors``), the model card ``README.md``, ``metrics.json``, the split
manifest ``splits.csv`` without file paths, ``train_config.json`` and the figures. ``push`` then
uploads that folder with a Hub client: ``huggingface_hub.HfApi()`` by default, or any object with
the same ``create_repo`` and ``upload_folder`` methods (tests pass a recorder). If the upload fails,
the exported folder stays where it is, the error is reported, and the command exits non-zero.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from dermfuse import DermFuse
from dermfuse.data import read_manifest
from publish.card import model_card
from train.checkpoint import MODEL_DIR, model_folder, write_json
from train.config import CONFIG_FILE, parse_settings
from train.data import MANIFEST, public_manifest

FIGURES = ("learning_curves.png", "confusion_matrix.png", "roc_curves.png", "reliability.png")
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


@dataclass
class PushConfig:
    """Settings of ``python -m train push``."""

    stage = "push"
    run: str = ""  # a finished stage-2 run folder (python -m train classifier ...)
    repo_id: str = ""  # USER/NAME on the Hugging Face Hub
    folder: str = ""  # where to export before uploading (default <run>/publish)
    private: bool = False  # create the repository as private
    commit_message: str = "Upload dermfuse model"

    def __post_init__(self):
        if self.repo_id and not REPO_ID.match(self.repo_id):
            raise ValueError(f"--repo-id={self.repo_id}: expected USER/NAME (letters, digits, '-', '_', '.')")


def export(run, folder, reproduce: dict | None = None, repo_id: str | None = None, results: dict | None = None) -> Path:
    """Write the publishable folder for stage-2 ``run`` into ``folder`` (replacing it); return it.

    ``results``: measurements made beside the run that join ``metrics.json`` and the card:
    ``pipeline_test`` (the test split through the pipeline, with the ``command`` that reproduces it)
    and ``cross_validation`` (``python -m train real``).
    """
    run, folder = Path(run), Path(folder)
    metrics_path = run / "metrics.json"
    if not metrics_path.is_file():
        raise FileNotFoundError(f"{run} has no metrics.json: is it a finished run folder?")
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    if metrics.get("stage") != "classifier" or "calibration" not in metrics:
        raise ValueError(f"{run} is not a finished stage-2 run (no calibrated classifier): publish the run made by "
                         "`python -m train classifier`, after it ends")  # fmt: skip
    model = DermFuse.from_pretrained(str(model_folder(run / MODEL_DIR)))
    train_config = json.loads((run / CONFIG_FILE).read_text(encoding="utf-8"))
    if reproduce:
        metrics["reproduce"] = reproduce
    metrics.update(results or {})
    if folder.exists():
        shutil.rmtree(folder)
    model.save_pretrained(folder)
    (folder / "README.md").write_text(model_card(model.config, metrics, train_config, repo_id, reproduce), encoding="utf-8")
    write_json(folder / "metrics.json", metrics)
    write_json(folder / CONFIG_FILE, train_config)
    public_manifest(read_manifest(run / MANIFEST)).to_csv(folder / MANIFEST, index=False)
    for name in FIGURES:
        if (run / name).is_file():
            shutil.copy2(run / name, folder / name)
    segmenter_run = Path((metrics.get("segmenter") or {}).get("run", ""))
    if (segmenter_run / "learning_curves.png").is_file():
        shutil.copy2(segmenter_run / "learning_curves.png", folder / "segmenter_learning_curves.png")
    return folder


def rewrite_card(folder) -> Path:
    """Write the model card ``README.md`` of an exported model folder again from its ``config.json``,
    ``metrics.json`` and ``train_config.json`` (after a step that adds to them, e.g. ``python -m train
    operating-points``); return its path."""
    folder = Path(folder)
    config, metrics, train_config = (json.loads((folder / name).read_text(encoding="utf-8"))
                                     for name in ("config.json", "metrics.json", CONFIG_FILE))
    path = folder / "README.md"
    path.write_text(model_card(config, metrics, train_config, None, metrics.get("reproduce")), encoding="utf-8")
    return path


def push(run, repo_id: str, api=None, folder=None, private: bool = False, commit_message: str = "Upload dermfuse model") -> int:
    """Export ``run`` and upload it to ``repo_id`` with ``api`` (default ``HfApi()``); 0 on success, 1 on failure."""
    if not repo_id or not REPO_ID.match(repo_id):
        raise ValueError(f"--repo-id={repo_id!r}: expected USER/NAME")
    folder = export(run, folder or Path(run) / "publish", repo_id=repo_id)
    print(f"exported {folder}: {', '.join(sorted(p.name for p in folder.iterdir()))}")
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    try:
        api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
        api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=str(folder), commit_message=commit_message)
    except Exception as error:  # network, authentication, quota: the Hub client raises many kinds
        print(f"error: upload to {repo_id} failed ({type(error).__name__}: {error}).\n"
              f"The exported model is intact in {folder}; fix the cause (e.g. `hf auth login`) and run the "
              f"same command again.", file=sys.stderr)  # fmt: skip
        return 1
    print(f"uploaded {folder} to https://huggingface.co/{repo_id}")
    return 0


def main(argv: list[str] | None = None, api=None) -> int:
    config = parse_settings(PushConfig, sys.argv[1:] if argv is None else argv)
    if not config.run or not config.repo_id:
        raise ValueError("push needs --run=RUN_FOLDER (a finished stage-2 run) and --repo-id=USER/NAME")
    return push(config.run, config.repo_id, api=api, folder=config.folder or None, private=config.private,
                commit_message=config.commit_message)  # fmt: skip
