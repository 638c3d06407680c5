"""Issue 13's preset comparison: the ``tiny`` classifier from scratch against the ``small`` one, same split, masks and budget.

    python -m experiments.tiny_vs_small        # ≈ 30 min on the 2-core CPU → docs/results/tiny_vs_small.json

The ``small`` classifier's run (``runs/ham10000/classifier``: ImageNet EfficientNet-Lite0 encoders, the shipped
classifier) recorded each epoch's wall time and validation scores. The ``tiny`` classifier (timm DenseNets with growth
rate 12, random initialisation) is trained from scratch with its own recipe on the same split, from the lesion images
of the same segmenter's masks (that run's mask cache), the full variant (both streams and the metadata), and stopped
after the wall time the small run took for its first ``--small_epochs`` epochs. Both are compared on validation
balanced accuracy at that budget (the split that picks models); the tiny run's test numbers are reported beside the
small run's. Both runs were cut mid-schedule at that budget (neither learning rate had decayed), and the small run
went on to its full schedule: its final numbers are reported too.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from dermfuse import DermFuse, vocab
from dermfuse.models.presets import PRESETS
from train.checkpoint import MODEL_DIR, model_folder
from train.classifier import MASK_DIR, run_classifier
from train.config import ClassifierConfig, make_config, parse_settings
from train.data import MANIFEST

CLASSIFIER_KEYS = ("classifier_encoder", "classifier_encoder_kwargs", "image_size", "embed_dim", "num_heads", "metadata_layers")


@dataclass
class TinyVsSmallConfig:
    """Settings of ``python -m experiments.tiny_vs_small``."""

    small_run: str = "runs/ham10000/classifier"  # the small classifier's finished run (its split, masks, history)
    small_epochs: int = 4  # the budget: the wall time of the small run's first this-many epochs
    work: str = "runs/tiny_vs_small"
    json: str = "docs/results/tiny_vs_small.json"
    seed: int = 0

    def __post_init__(self):
        if not (Path(self.small_run) / "metrics.json").is_file():
            raise FileNotFoundError(f"--small_run={self.small_run}: no finished classifier run there (metrics.json): "
                                    "make it with `python -m train ham10000`")
        if self.small_epochs < 1:
            raise ValueError("--small_epochs must be at least 1")


def budget_seconds(history: list[dict], epochs: int) -> float:
    """Wall seconds of the first ``epochs`` epochs of a run's history (its ``metrics.json`` ``epochs`` rows)."""
    if len(history) < epochs:
        raise ValueError(f"the small run has {len(history)} epochs, fewer than --small_epochs={epochs}")
    return float(sum(row["seconds"] for row in history[:epochs]))


def tiny_source(small_run: Path, out: Path) -> Path:
    """A saved DermFuse with the small run's segmenter and the tiny preset's classifier settings (its classifier is
    replaced by a fresh one of the ``full`` variant when training starts)."""
    config = json.loads((small_run / "train_config.json").read_text(encoding="utf-8"))
    segmenter = DermFuse.from_pretrained(str(model_folder(Path(config["segmenter"]) / MODEL_DIR)))
    model = DermFuse(**{**segmenter.config, **{key: PRESETS["tiny"][key] for key in CLASSIFIER_KEYS}})
    model.load_state_dict({k: v for k, v in segmenter.state_dict().items() if k.startswith("segmenter.")}, strict=False)
    model.save_pretrained(str(out))
    return out


def share_masks(small_run: Path, run: Path) -> None:
    """Hard-link the small run's mask cache (same segmenter weights, so ``cache_masks`` keeps it)."""
    source, target = small_run / MASK_DIR, run / MASK_DIR
    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if not (target / path.name).exists():
            os.link(path, target / path.name)


def run(config: TinyVsSmallConfig) -> dict:
    small_run, work = Path(config.small_run), Path(config.work)
    small = json.loads((small_run / "metrics.json").read_text(encoding="utf-8"))
    budget = budget_seconds(small["epochs"], config.small_epochs)
    source = tiny_source(small_run, work / "source") if not (work / "source" / "model.safetensors").is_file() else work / "source"
    tiny_run = work / "tiny"
    if not (tiny_run / "metrics.json").is_file() or not json.loads((tiny_run / "metrics.json").read_text()).get("finished"):
        share_masks(small_run, tiny_run)
        run_classifier(make_config(ClassifierConfig, "tiny", out=str(tiny_run), segmenter=str(source), variant="full",
                                   manifest=str(small_run / MANIFEST), classes=",".join(vocab.HAM10000_CLASSES),
                                   time_limit=budget / 60, seed=config.seed, progress=False, name="tiny-vs-small"))  # fmt: skip
    tiny = json.loads((tiny_run / "metrics.json").read_text(encoding="utf-8"))
    at_budget = max(small["epochs"][:config.small_epochs], key=lambda row: row["val"]["balanced_accuracy"])

    def summary(metrics: dict | None) -> dict | None:
        keys = ("balanced_accuracy", "macro_auc", "ece")
        return None if metrics is None else {k: metrics.get(k) for k in keys}

    tiny_best = max(tiny["epochs"], key=lambda row: row["val"]["balanced_accuracy"])
    report = {
        "budget_seconds": budget,
        "budget": f"the wall time of the small run's first {config.small_epochs} epochs",
        "split": str(small_run / MANIFEST),
        "small": {"run": str(small_run), "encoders": "tf_efficientnet_lite0, ImageNet (PyPI weight package)",
                  "val_at_budget": summary(at_budget["val"]), "epochs_at_budget": config.small_epochs,
                  "val_final": summary(small["epochs"][-1]["val"]), "epochs_final": len(small["epochs"]),
                  "test_final": summary(small.get("test"))},
        "tiny": {"run": str(tiny_run), "encoders": "densenet (growth 12, blocks 2-4-6-4), random initialisation",
                 "epochs_at_budget": len(tiny["epochs"]), "stopped": tiny.get("stopped"),
                 "val_at_budget": summary(tiny_best["val"]), "val_history": [row["val"]["balanced_accuracy"] for row in tiny["epochs"]],
                 "test_at_budget": summary(tiny.get("test"))},
        "command": "python -m experiments.tiny_vs_small",
    }  # fmt: skip
    Path(config.json).write_text(json.dumps(report, indent=1), encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    report = run(parse_settings(TinyVsSmallConfig, sys.argv[1:] if argv is None else argv))
    for name in ("small", "tiny"):
        print(name, json.dumps({k: v for k, v in report[name].items() if k != "val_history"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
