"""Metrics and calibration: checked against scikit-learn and against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, jaccard_score, recall_score, roc_auc_score

from dermfuse.metrics import (
    classification_metrics,
    expected_calibration_error,
    fit_prior_shift,
    fit_temperature,
    mask_counts,
    reliability_bins,
    segmentation_metrics,
    segmentation_scores,
    softmax,
)

CLASSES = ("akiec", "bcc", "bkl")


def disc(size: int, cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2


def test_segmentation_scores_match_sklearn_per_image():
    rng = np.random.default_rng(0)
    truth = np.stack([disc(48, 24, 24, 12), disc(48, 20, 26, 9), disc(48, 30, 18, 14)])
    predicted = np.stack([disc(48, 25, 23, 12), disc(48, 22, 26, 11), rng.random((48, 48)) > 0.7])
    scores = segmentation_scores(mask_counts(predicted, truth))
    for i in range(3):
        t, p = truth[i].ravel(), predicted[i].ravel()
        assert scores["dice"][i] == pytest.approx(f1_score(t, p))
        assert scores["iou"][i] == pytest.approx(jaccard_score(t, p))
        assert scores["sensitivity"][i] == pytest.approx(recall_score(t, p))
        assert scores["specificity"][i] == pytest.approx(recall_score(~t, ~p))
    # The noisy third prediction is far below 0.65 Jaccard: thresholded to 0; the discs are above and kept.
    assert scores["thresholded_jaccard"][2] == 0.0 and scores["iou"][2] < 0.65
    assert scores["thresholded_jaccard"][0] == pytest.approx(scores["iou"][0]) and scores["iou"][0] > 0.65


def test_segmentation_metrics_average_images_and_handle_empty_masks():
    empty = np.zeros((8, 8), bool)
    full = np.ones((8, 8), bool)
    half = np.zeros((8, 8), bool)
    half[:, :4] = True
    counts = mask_counts(np.stack([empty, half, empty]), np.stack([empty, full, full]))
    metrics = segmentation_metrics(counts)
    # image 1: both empty → Dice 1; image 2: half of full → Dice 2/3, IoU 1/2; image 3: missed → 0.
    assert metrics["dice"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert metrics["iou"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert metrics["thresholded_jaccard"] == pytest.approx((1 + 0 + 0) / 3)
    assert metrics["sensitivity"] == pytest.approx((0.5 + 0) / 2)  # undefined on the lesion-free image
    assert metrics["images"] == 3


def test_classification_metrics_match_sklearn_and_hand_values():
    labels = np.array([0, 0, 1, 1, 2, 2, 2, 0])
    probabilities = np.array([
        [0.8, 0.1, 0.1], [0.4, 0.5, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1],
        [0.1, 0.2, 0.7], [0.3, 0.3, 0.4], [0.6, 0.2, 0.2], [0.5, 0.25, 0.25],
    ])  # fmt: skip
    m = classification_metrics(labels, probabilities, CLASSES)
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)
    assert m["per_class"]["bcc"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["akiec"]["recall"] == pytest.approx(2 / 3)
    for k, name in enumerate(CLASSES):
        assert m["per_class"][name]["auc"] == pytest.approx(roc_auc_score(labels == k, probabilities[:, k]))
    assert m["macro_auc"] == pytest.approx(roc_auc_score(labels, probabilities, multi_class="ovr", average="macro"))
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 2, 0], [1, 0, 2]]
    assert m["cases"] == 8


def test_auc_of_an_absent_class_is_none_and_left_out_of_the_macro_mean():
    labels = np.array([0, 1, 0, 1])
    probabilities = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.3, 0.6, 0.1]])
    m = classification_metrics(labels, probabilities, CLASSES)
    assert m["per_class"]["bkl"]["auc"] is None and m["per_class"]["bkl"]["recall"] is None
    assert m["macro_auc"] == pytest.approx(1.0)


def test_ece_by_hand_and_reliability_bins():
    # Two bins: (0, .5] and (.5, 1]. Confidences .9, .9 (one right) and .4 (right): |.5-.9|·2/3 + |1-.4|·1/3.
    labels = np.array([0, 1, 1])
    probabilities = np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.3, 0.4, 0.3]])
    assert expected_calibration_error(labels, probabilities, bins=2) == pytest.approx(0.4 * 2 / 3 + 0.6 / 3)
    table = reliability_bins(labels, probabilities, bins=2)
    assert table["count"].tolist() == [1, 2]
    assert table["accuracy"][1] == pytest.approx(0.5) and table["confidence"][1] == pytest.approx(0.9)
    perfect = np.eye(3)[[0, 1, 2]]
    assert expected_calibration_error([0, 1, 2], perfect) == pytest.approx(0.0)


def test_fit_temperature_recovers_the_temperature_that_made_the_logits_overconfident():
    rng = np.random.default_rng(0)
    n, k, true_t = 4000, 5, 2.5
    calibrated = rng.normal(0, 1.5, (n, k))
    labels = (softmax(calibrated).cumsum(1) < rng.random((n, 1))).sum(1)  # labels drawn from the calibrated model
    overconfident = calibrated * true_t  # softmax(overconfident / 2.5) is calibrated
    fitted = fit_temperature(overconfident, labels)
    assert fitted == pytest.approx(true_t, rel=0.08)
    before = expected_calibration_error(labels, softmax(overconfident))
    after = expected_calibration_error(labels, softmax(overconfident, fitted))
    assert after < before / 2
    assert (softmax(overconfident, fitted).argmax(1) == overconfident.argmax(1)).all()  # accuracy unchanged


def test_fit_prior_shift_puts_back_the_prior_a_balanced_model_left_out():
    rng = np.random.default_rng(1)
    prior = np.array([0.7, 0.2, 0.1])
    n, k = 6000, 3
    labels = rng.choice(k, size=n, p=prior)
    balanced = rng.normal(0, 1.0, (n, k)) + 2.0 * np.eye(k)[labels]  # scores as if every class were equally common
    log_prior = np.log(prior) - np.log(prior).mean()
    alpha, temperature = fit_prior_shift(balanced, labels, log_prior, tolerance=1.0)  # any balanced-accuracy cost
    # The true posterior's logits are 2·z + log prior = (z + 0.5 · log prior) / 0.5.
    assert alpha == pytest.approx(0.5, abs=0.15) and temperature == pytest.approx(0.5, rel=0.2)
    before = expected_calibration_error(labels, softmax(balanced, fit_temperature(balanced, labels)))
    after = expected_calibration_error(labels, softmax(balanced + alpha * log_prior, temperature))
    assert after < before
    strict_alpha, _ = fit_prior_shift(balanced, labels, log_prior, tolerance=0.0)  # no cost allowed
    strict = balanced + strict_alpha * log_prior
    assert balanced_accuracy_score(labels, strict.argmax(1)) >= balanced_accuracy_score(labels, balanced.argmax(1))
    assert strict_alpha < alpha
    with pytest.raises(ValueError, match="one value per class"):
        fit_prior_shift(balanced, labels, log_prior[:2])


def test_bad_inputs_raise_value_error():
    with pytest.raises(ValueError, match="shape"):
        mask_counts(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="cases, classes"):
        classification_metrics([0, 1], np.ones((2, 2)) / 2, CLASSES)
    with pytest.raises(ValueError, match="class indices"):
        classification_metrics([0, 3], np.ones((2, 3)) / 3, CLASSES)
    with pytest.raises(ValueError, match="at least one"):
        fit_temperature(np.zeros((0, 3)), [])
