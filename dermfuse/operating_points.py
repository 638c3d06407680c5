"""Operating points on the melanoma score: thresholds with a stated rule, so a user reads a decision, not a raw probability.

A threshold is chosen on the *validation* split (never the test split) to meet one rule: melanoma
at 95 % sensitivity (flag at least 95 % of the validation melanomas) or at 80 % specificity (leave
at least 80 % of the validation non-melanomas unflagged), from scikit-learn's ``roc_curve``. A
lesion is flagged by a rule when its calibrated melanoma score is at or above the rule's threshold.
The thresholds, with what they achieved on validation and how many images that rests on, are stored
in the model's ``config.json`` (``operating_points``, fitted by ``python -m train operating-points``);
the pipeline places every case against them (``place``) and the app, the case sheet, the JSON and
the API say where it falls. A model without them says nothing about them.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_curve

POSITIVE = "mel"
TARGETS = (("sensitivity", 0.95), ("specificity", 0.80))


def rates(labels, scores, threshold: float) -> tuple[float, float]:
    """(sensitivity, specificity) of the rule "score ≥ threshold" on boolean ``labels``."""
    labels, flagged = np.asarray(labels, dtype=bool), np.asarray(scores, dtype=float) >= threshold
    return float(flagged[labels].mean()), float((~flagged[~labels]).mean())


def threshold_for(labels, scores, target: str, value: float) -> float:
    """The threshold that meets ``target`` ("sensitivity" or "specificity") ≥ ``value`` on these data with the
    best value of the other: the highest threshold reaching the sensitivity, or the lowest keeping the specificity."""
    fpr, tpr, thresholds = roc_curve(np.asarray(labels, dtype=bool), np.asarray(scores, dtype=float), drop_intermediate=False)
    if target == "sensitivity":
        index = int(np.argmax(tpr >= value - 1e-12))  # thresholds fall as tpr rises: the first that reaches it
    elif target == "specificity":
        index = int(np.nonzero(fpr <= 1 - value + 1e-12)[0][-1])
    else:
        raise ValueError(f"unknown target {target!r}: expected 'sensitivity' or 'specificity'")
    # roc_curve's first threshold is +inf (nothing flagged): stay just above the highest score instead.
    return float(min(thresholds[index], np.nextafter(np.max(scores), np.inf)))


def fit_operating_points(labels, scores, targets=TARGETS, positive: str = POSITIVE, split: str = "val") -> dict:
    """Thresholds on ``scores`` (the calibrated ``positive`` probability) meeting each (target, value) on
    boolean ``labels``, with the sensitivity and specificity each reached and the counts they rest on."""
    labels, scores = np.asarray(labels, dtype=bool), np.asarray(scores, dtype=float)
    if labels.shape != scores.shape or labels.ndim != 1:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} must be two vectors of one length")
    if labels.all() or not labels.any():
        raise ValueError(f"fitting operating points needs both {positive} and other cases; got {labels.sum()} of {len(labels)}")
    points = []
    for target, value in targets:
        if not 0 < value < 1:
            raise ValueError(f"{target} target {value}: a share between 0 and 1, e.g. 0.95")
        threshold = threshold_for(labels, scores, target, value)
        sensitivity, specificity = rates(labels, scores, threshold)
        points.append({"target": target, "value": float(value), "threshold": threshold,
                       "sensitivity": sensitivity, "specificity": specificity})
    return {"class": positive, "fitted_on": split, "images": int(len(labels)), "positives": int(labels.sum()),
            "points": points}


def measure(fitted: dict, labels, scores) -> list[dict]:
    """Each stored point's sensitivity and specificity on other data (e.g. the test split)."""
    return [{"target": p["target"], "value": p["value"], "threshold": p["threshold"],
             **dict(zip(("sensitivity", "specificity"), rates(labels, scores, p["threshold"])))}
            for p in fitted["points"]]  # fmt: skip


def rule_name(point: dict, positive: str = POSITIVE) -> str:
    """'95 % melanoma sensitivity'."""
    return f"{100 * point['value']:g} % {'melanoma' if positive == 'mel' else positive} {point['target']}"


def _shown(score: float, threshold: float) -> tuple[str, str]:
    """The score and the threshold with as many decimals (2 to 4) as it takes to tell them apart."""
    for digits in (2, 3, 4):
        a, b = f"{score:.{digits}f}", f"{threshold:.{digits}f}"
        if a != b:
            return a, b
    return a, b


def statement(score: float, point: dict, positive: str = POSITIVE) -> str:
    """One sentence: where the score falls against one operating point, naming its rule and what it did on
    validation data."""
    above = score >= point["threshold"]
    other = "specificity" if point["target"] == "sensitivity" else "sensitivity"
    shown, threshold = _shown(score, point["threshold"])
    name = "Melanoma" if positive == "mel" else positive
    return (f"{name} score {shown}: {'at or above' if above else 'below'} the threshold {threshold} set for "
            f"{rule_name(point, positive)} on validation data (validation {other} {point[other]:.2f}), so this rule "
            + ("flags the lesion." if above else "does not flag it."))


def place(probabilities, classes, fitted: dict | None) -> list[dict] | None:
    """Where a case's calibrated probabilities fall against the model's stored operating points: one record per
    point (rule, threshold, validation rates, flagged, statement); None for a model without them."""
    if not fitted or fitted.get("class") not in classes:
        return None
    positive = fitted["class"]
    score = float(probabilities[list(classes).index(positive)])
    return [{"rule": rule_name(p, positive), "class": positive, "score": score, "threshold": p["threshold"],
             "flagged": score >= p["threshold"], "validation_sensitivity": p["sensitivity"],
             "validation_specificity": p["specificity"], "validation_images": fitted["images"],
             "validation_positives": fitted["positives"], "statement": statement(score, p, positive)}
            for p in fitted["points"]]  # fmt: skip
