"""Metrics for both stages, shared by training and evaluation, plus temperature calibration.

Segmentation is scored per image and then averaged over images, as the ISIC 2018 Task 1 challenge
does: Dice, IoU (Jaccard), thresholded Jaccard (an image's Jaccard counts as 0 below 0.65),
sensitivity and specificity. They come from each image's pixel confusion counts: scikit-learn's
``jaccard_score``/``f1_score`` give the same numbers (the tests check it) but one call per image on
flattened masks would cost more than the model's forward pass on thousands of images.

Classification uses scikit-learn: accuracy, balanced accuracy (the ISIC headline metric: mean
per-class recall), per-class precision/recall/F1, per-class one-vs-rest ROC AUC and their macro
mean, the confusion matrix. scikit-learn has no multiclass expected calibration error, so ECE is
written here: top-label confidence in equal-width bins, the bins' |accuracy − confidence| weighted
by their share of cases (Guo et al. 2017). ``fit_temperature`` finds the one temperature T that
minimises the validation negative log-likelihood of ``softmax(logits / T)`` (Guo et al. 2017).
``fit_prior_shift`` first puts back part of the class prior that class-balanced training took out
(logit adjustment, Menon et al. 2021), as far as validation balanced accuracy allows.

Undefined values (an AUC for a class absent from the labels, a sensitivity on an image with no
lesion) are ``None`` in the returned dicts, so they serialise to JSON ``null`` and are never
averaged in as zeros.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

JACCARD_THRESHOLD = 0.65
SEGMENTATION_METRICS = ("dice", "iou", "thresholded_jaccard", "sensitivity", "specificity")


# --- segmentation -----------------------------------------------------------------------------


def mask_counts(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Pixel confusion counts per image: boolean masks (N, H, W) → int64 (N, 4) = TP, FP, FN, TN."""
    predicted, target = np.asarray(predicted, dtype=bool), np.asarray(target, dtype=bool)
    if predicted.shape != target.shape:
        raise ValueError(f"predicted masks {predicted.shape} and target masks {target.shape} differ in shape")
    if predicted.ndim == 2:
        predicted, target = predicted[None], target[None]
    flat_p, flat_t = predicted.reshape(len(predicted), -1), target.reshape(len(target), -1)
    tp = (flat_p & flat_t).sum(1)
    fp = (flat_p & ~flat_t).sum(1)
    fn = (~flat_p & flat_t).sum(1)
    tn = flat_p.shape[1] - tp - fp - fn
    return np.stack([tp, fp, fn, tn], axis=1).astype(np.int64)


def segmentation_scores(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image scores (N,) from :func:`mask_counts`; NaN where a score is undefined.

    An image whose prediction and truth are both empty scores Dice = IoU = 1 (a correct "no lesion").
    """
    tp, fp, fn, tn = (np.asarray(counts, dtype=np.float64).reshape(-1, 4)[:, i] for i in range(4))
    with np.errstate(divide="ignore", invalid="ignore"):
        union = tp + fp + fn
        dice = np.where(union > 0, 2 * tp / (2 * tp + fp + fn), 1.0)
        iou = np.where(union > 0, tp / union, 1.0)
        sensitivity = np.where(tp + fn > 0, tp / (tp + fn), np.nan)
        specificity = np.where(tn + fp > 0, tn / (tn + fp), np.nan)
    thresholded = np.where(iou >= JACCARD_THRESHOLD, iou, 0.0)
    return {"dice": dice, "iou": iou, "thresholded_jaccard": thresholded, "sensitivity": sensitivity,
            "specificity": specificity}  # fmt: skip


def segmentation_metrics(counts: np.ndarray) -> dict[str, float | None]:
    """Means over images of :func:`segmentation_scores` (undefined images left out), plus ``images``."""
    scores = segmentation_scores(counts)
    result: dict = {name: _mean(values) for name, values in scores.items()}
    result["images"] = int(len(scores["dice"]))
    return result


# --- classification ---------------------------------------------------------------------------


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Class probabilities (N, K) from logits (N, K), divided by ``temperature`` first."""
    return np.exp(log_softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1))


def classification_metrics(labels: Sequence[int], probabilities: np.ndarray, classes: Sequence[str],
                           bins: int = 15) -> dict:  # fmt: skip
    """Every classification metric for integer ``labels`` (N,) and ``probabilities`` (N, K).

    Returns accuracy, balanced_accuracy, macro_auc, ece, nll, per_class {precision, recall, f1,
    auc, support} and the confusion matrix (rows: truth, columns: prediction, in ``classes`` order).
    """
    labels, probabilities = _check_cases(labels, probabilities, classes)
    predicted = probabilities.argmax(axis=1)
    indices = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=indices, zero_division=0
    )
    aucs = one_vs_rest_auc(labels, probabilities)
    sensitivities = [sensitivity_at_specificity(labels == k, probabilities[:, k]) for k in indices]
    with warnings.catch_warnings():  # a class predicted but absent from the labels: sklearn warns, result is right
        warnings.simplefilter("ignore", UserWarning)
        balanced = balanced_accuracy_score(labels, predicted)
    per_class = {
        name: {"precision": float(precision[k]), "recall": float(recall[k]) if support[k] else None,
               "f1": float(f1[k]), "auc": aucs[k], "support": int(support[k]),
               "sensitivity_at_80_specificity": sensitivities[k]}  # fmt: skip
        for k, name in enumerate(classes)
    }
    defined = [auc for auc in aucs if auc is not None]
    return {
        "cases": int(len(labels)),
        "accuracy": float(accuracy_score(labels, predicted)),
        "balanced_accuracy": float(balanced),
        "macro_auc": float(np.mean(defined)) if defined else None,
        "ece": expected_calibration_error(labels, probabilities, bins),
        "nll": negative_log_likelihood(labels, probabilities),
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(labels, predicted, labels=indices).tolist(),
    }


def binary_auc(positive: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC of ``scores`` for the positive cases against the others; ``None`` without both kinds."""
    positive = np.asarray(positive, dtype=bool)
    return float(roc_auc_score(positive, scores)) if 0 < positive.sum() < len(positive) else None


def one_vs_rest_auc(labels: np.ndarray, probabilities: np.ndarray) -> list[float | None]:
    """ROC AUC of each class against the rest; ``None`` for a class with no positive or no negative case."""
    return [binary_auc(labels == k, probabilities[:, k]) for k in range(probabilities.shape[1])]


def sensitivity_at_specificity(positive: np.ndarray, scores: np.ndarray, specificity: float = 0.8) -> float | None:
    """The highest sensitivity at which a score threshold keeps at least ``specificity`` on the
    negatives (one-vs-rest ROC, e.g. melanoma at 80 % specificity); ``None`` without both kinds."""
    positive = np.asarray(positive, dtype=bool)
    if not 0 < positive.sum() < len(positive):
        return None
    false_positive_rate, true_positive_rate, _ = roc_curve(positive, scores)
    return float(true_positive_rate[false_positive_rate <= 1.0 - specificity + 1e-12].max())


def negative_log_likelihood(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean −log p(true class), probabilities clipped at 1e-12."""
    picked = np.asarray(probabilities)[np.arange(len(labels)), np.asarray(labels)]
    return float(-np.log(np.clip(picked, 1e-12, 1.0)).mean())


# --- calibration ------------------------------------------------------------------------------


def reliability_bins(labels: Sequence[int], probabilities: np.ndarray, bins: int = 15) -> dict[str, np.ndarray]:
    """Top-label reliability in ``bins`` equal-width confidence bins over (0, 1].

    Returns per bin: ``confidence`` (mean top probability, NaN if empty), ``accuracy`` (share of
    correct top predictions, NaN if empty), ``count``; and ``edges`` (bins + 1).
    """
    labels, probabilities = np.asarray(labels), np.asarray(probabilities, dtype=np.float64)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)  # (lo, hi] bins
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(which, weights=confidence, minlength=bins) / count
        accuracy = np.bincount(which, weights=correct.astype(np.float64), minlength=bins) / count
    return {"confidence": mean_confidence, "accuracy": accuracy, "count": count, "edges": edges}


def expected_calibration_error(labels: Sequence[int], probabilities: np.ndarray, bins: int = 15) -> float:
    """ECE: Σ_bins (n_b / N) · |accuracy_b − confidence_b| over top-label confidence bins."""
    table = reliability_bins(labels, probabilities, bins)
    used = table["count"] > 0
    gaps = np.abs(table["accuracy"][used] - table["confidence"][used])
    return float((table["count"][used] / table["count"].sum() * gaps).sum())


def fit_temperature(logits: np.ndarray, labels: Sequence[int], bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature T > 0 minimising the NLL of ``softmax(logits / T)`` on (validation) cases.

    One scalar, searched on log T within ``bounds`` (bounded Brent): scaling by T never changes
    the argmax, so accuracy is untouched and only the confidence is calibrated.
    """
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    if len(labels) == 0:
        raise ValueError("fit_temperature needs at least one labelled case (is the validation split empty?)")
    rows = np.arange(len(labels))

    def nll(log_t: float) -> float:
        return float(-log_softmax(logits / math.exp(log_t), axis=1)[rows, labels].mean())

    result = minimize_scalar(nll, bounds=tuple(math.log(b) for b in bounds), method="bounded",
                             options={"xatol": 1e-5})  # fmt: skip
    return float(math.exp(result.x))


def fit_prior_shift(logits: np.ndarray, labels: Sequence[int], log_prior: np.ndarray, tolerance: float = 0.005,
                    bins: int = 15) -> tuple[float, float]:
    """(α, T) for ``softmax((logits + α · log_prior) / T)``: the share α ∈ {0, 0.05, …, 1} of the log
    class prior added back, with the lowest (validation) ECE among those that cost at most
    ``tolerance`` balanced accuracy against α = 0, and the temperature fitted after it.

    A model trained class-balanced scores every class as if all were equally common, so its confident
    answers on real (nevus-heavy) data are too often wrong; adding the whole prior back (α = 1)
    calibrates best but moves rare classes' cases to nevus, which balanced accuracy (the ISIC metric)
    punishes. The tolerance states the trade.
    """
    logits, labels, log_prior = np.asarray(logits, dtype=np.float64), np.asarray(labels), np.asarray(log_prior, dtype=np.float64)
    if log_prior.shape != (logits.shape[1],):
        raise ValueError(f"log_prior has shape {log_prior.shape}; expected one value per class ({logits.shape[1]})")
    floor = balanced_accuracy_score(labels, logits.argmax(1)) - tolerance
    best = None
    for alpha in np.linspace(0.0, 1.0, 21):
        shifted = logits + alpha * log_prior
        if alpha and balanced_accuracy_score(labels, shifted.argmax(1)) < floor:
            continue
        temperature = fit_temperature(shifted, labels)
        ece = expected_calibration_error(labels, softmax(shifted, temperature), bins)
        if best is None or ece < best[0]:
            best = (ece, float(alpha), temperature)
    return best[1], best[2]


def _check_cases(labels, probabilities, classes) -> tuple[np.ndarray, np.ndarray]:
    labels, probabilities = np.asarray(labels, dtype=np.int64), np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape != (len(labels), len(classes)):
        raise ValueError(f"probabilities {probabilities.shape} must be (cases, classes) = ({len(labels)}, {len(classes)})")
    if len(labels) == 0:
        raise ValueError("no labelled cases to score")
    if labels.min() < 0 or labels.max() >= len(classes):
        raise ValueError(f"labels must be class indices in [0, {len(classes)}): drop unlabelled cases first")
    return labels, probabilities


def _mean(values: np.ndarray) -> float | None:
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else None
