"""The figures of a training or evaluation run, as PNG files (matplotlib, Agg backend: no display needed).

- ``learning_curves``: training loss and the validation metrics per epoch;
- ``confusion_matrix_figure``: counts and row-normalised shares (scikit-learn's display);
- ``roc_curves``: one-vs-rest ROC curve per class with its AUC (scikit-learn's ``roc_curve``);
- ``reliability_diagram``: top-label accuracy against confidence before and after temperature
  scaling, with the ECE of each (bins from :func:`dermfuse.metrics.reliability_bins`);
- ``segmentation_cases``: images with the true (green) and the predicted (magenta) lesion outline;
- ``grouped_bars``: mean ± std per model variant and test condition (the ablation's chart);
- ``image_grid``: rows of titled pictures (the CAM gallery).

Each function writes one file and returns its path; figures are closed after saving, so a long
run never accumulates open figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, auc, roc_curve  # noqa: E402

from dermfuse.metrics import expected_calibration_error, reliability_bins  # noqa: E402

DPI = 120


def learning_curves(history: Sequence[dict], path, metrics: Sequence[str]) -> Path:
    """Loss (train, and validation if recorded) and the named validation ``metrics`` against epoch.

    ``history``: one dict per epoch with ``epoch``, ``train_loss``, optionally ``val_loss``, and
    ``val`` = {metric: value}.
    """
    epochs = [row["epoch"] for row in history]
    figure, (loss_axis, metric_axis) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axis.plot(epochs, [row["train_loss"] for row in history], marker="o", label="train")
    if all(row.get("val_loss") is not None for row in history):
        loss_axis.plot(epochs, [row["val_loss"] for row in history], marker="o", label="validation")
    loss_axis.set(xlabel="epoch", ylabel="loss", title="Loss")
    loss_axis.legend()
    for name in metrics:
        values = [row["val"].get(name) for row in history]
        metric_axis.plot(epochs, [np.nan if v is None else v for v in values], marker="o", label=name.replace("_", " "))
    metric_axis.set(xlabel="epoch", ylabel="score", title="Validation", ylim=(0, 1.02))
    metric_axis.legend()
    for axis in (loss_axis, metric_axis):
        axis.grid(alpha=0.3)
        axis.xaxis.get_major_locator().set_params(integer=True)
    return _save(figure, path)


def confusion_matrix_figure(matrix, classes: Sequence[str], path, title: str = "Confusion matrix") -> Path:
    """Row-normalised confusion matrix (share of each true class), with the counts in brackets."""
    matrix = np.asarray(matrix)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.nan_to_num(matrix / matrix.sum(axis=1, keepdims=True))
    figure, axis = plt.subplots(figsize=(1.0 + 0.8 * len(classes), 0.6 + 0.8 * len(classes)))
    ConfusionMatrixDisplay(shares, display_labels=list(classes)).plot(
        ax=axis, cmap="Blues", values_format=".2f", colorbar=False, im_kw={"vmin": 0, "vmax": 1}
    )
    for (i, j), count in np.ndenumerate(matrix):
        axis.text(j, i + 0.3, f"({count})", ha="center", va="center", fontsize=7, color="grey")
    axis.set_title(title)
    return _save(figure, path)


def roc_curves(labels, probabilities, classes: Sequence[str], path, title: str = "One-vs-rest ROC") -> Path:
    """One ROC curve per class present with both outcomes, AUC in the legend."""
    labels, probabilities = np.asarray(labels), np.asarray(probabilities)
    figure, axis = plt.subplots(figsize=(5.5, 5))
    for k, name in enumerate(classes):
        positive = labels == k
        if not 0 < positive.sum() < len(labels):
            continue
        fpr, tpr, _ = roc_curve(positive, probabilities[:, k])
        axis.plot(fpr, tpr, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
    axis.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8)
    axis.set(xlabel="false positive rate", ylabel="true positive rate (sensitivity)", title=title, xlim=(0, 1), ylim=(0, 1.01))
    axis.legend(loc="lower right", fontsize=8)
    axis.grid(alpha=0.3)
    return _save(figure, path)


def reliability_diagram(labels, before, after, path, bins: int = 15, temperature: float | None = None) -> Path:
    """Accuracy against confidence per bin, before and after temperature scaling, ECE in the legend."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 4.5), sharey=True)
    for axis, probabilities, name in ((axes[0], before, "before"), (axes[1], after, "after")):
        table = reliability_bins(labels, probabilities, bins)
        edges, used = table["edges"], table["count"] > 0
        centres, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
        ece = expected_calibration_error(labels, probabilities, bins)
        axis.bar(centres[used], table["accuracy"][used], width=width * 0.95, color="tab:blue", alpha=0.8,
                 label=f"accuracy (ECE {ece:.3f})")  # fmt: skip
        axis.bar(centres[used], (table["confidence"] - table["accuracy"])[used], bottom=table["accuracy"][used],
                 width=width * 0.95, color="tab:red", alpha=0.3, label="gap to confidence")  # fmt: skip
        axis.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8)
        suffix = f" (T = {temperature:.2f})" if name == "after" and temperature is not None else ""
        axis.set(xlabel="confidence (top probability)", title=f"{name.capitalize()} temperature scaling{suffix}",
                 xlim=(0, 1), ylim=(0, 1))  # fmt: skip
        axis.legend(loc="upper left", fontsize=8)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    return _save(figure, path)


def segmentation_cases(images: Sequence[np.ndarray], truths: Sequence[np.ndarray], predictions: Sequence[np.ndarray],
                       titles: Sequence[str], path, columns: int = 3, suptitle: str = "") -> Path:  # fmt: skip
    """A grid of RGB images (H, W, 3) with the true mask's outline in green and the predicted one in magenta."""
    rows = int(np.ceil(len(images) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, truth, predicted, title in zip(axes.flat, images, truths, predictions, titles):
        axis.imshow(image)
        axis.contour(truth.astype(float), levels=[0.5], colors=["#22dd22"], linewidths=1.6)
        axis.contour(predicted.astype(float), levels=[0.5], colors=["#ff22ff"], linewidths=1.6, linestyles="--")
        axis.set_title(title, fontsize=10)
    if suptitle:
        figure.suptitle(suptitle, fontsize=11)
    return _save(figure, path)


def grouped_bars(means: dict[str, dict[str, float]], stds: dict[str, dict[str, float]], path, ylabel: str,
                 title: str = "", chance: float | None = None) -> Path:  # fmt: skip
    """One group of bars per key of ``means`` ({group: {series: value}}), error bars from ``stds``."""
    groups = list(means)
    series = list(next(iter(means.values())))
    width = 0.8 / len(series)
    figure, axis = plt.subplots(figsize=(max(6.0, 1.3 * len(groups) * max(1, len(series) / 2)), 4))
    for i, name in enumerate(series):
        x = np.arange(len(groups)) + (i - (len(series) - 1) / 2) * width
        values = [means[g][name] for g in groups]
        bars = axis.bar(x, values, width, yerr=[stds[g][name] for g in groups], capsize=3, label=name)
        axis.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
    if chance is not None:
        axis.axhline(chance, color="grey", linestyle=":", linewidth=1, label="chance")
    axis.set_xticks(np.arange(len(groups)), groups)
    axis.set_ylabel(ylabel)
    axis.set_ylim(0, 1.08)
    if len(series) > 1 or chance is not None:
        axis.legend(fontsize=8, loc="lower right")
    axis.set_title(title, fontsize=10)
    return _save(figure, path)


def image_grid(rows: Sequence[Sequence[tuple[np.ndarray, str]]], path, suptitle: str = "") -> Path:
    """Rows of (RGB image (H, W, 3), title) panels; rows may differ in length."""
    columns = max(len(row) for row in rows)
    figure, axes = plt.subplots(len(rows), columns, figsize=(2.6 * columns, 2.7 * len(rows)), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for row_axes, row in zip(axes, rows):
        for axis, (image, title) in zip(row_axes, row):
            axis.imshow(image)
            axis.set_title(title, fontsize=8)
    if suptitle:
        figure.suptitle(suptitle, fontsize=10)
    return _save(figure, path)


def _save(figure, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path
