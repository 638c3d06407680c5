"""The framing study's scores and its ISIC 2019 labels: right on inputs whose answers are known."""

import numpy as np
import pytest

from experiments.framing import isic2019_labels, scores

CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]


def test_isic2019_one_hot_rows_become_labels_and_other_diagnoses_drop_out(tmp_path):
    table = tmp_path / "gt.csv"
    table.write_text("image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK\n"
                     "ISIC_1,1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0\n"
                     "ISIC_2,0.0,0.0,0.0,1.0,0.0,0.0,0.0,0.0,0.0\n"
                     "ISIC_3,0.0,0.0,0.0,0.0,0.0,0.0,0.0,1.0,0.0\n")  # SCC: not one of the seven classes
    labels = isic2019_labels(table)
    assert labels.to_dict("list") == {"image_id": ["ISIC_1", "ISIC_2"], "label": ["mel", "akiec"]}


def test_scores_of_known_predictions():
    labels = np.array(["mel", "mel", "nv", "nv"])
    probabilities = np.zeros((4, 7))
    probabilities[:, CLASSES.index("nv")] = [0.2, 0.6, 0.7, 0.9]
    probabilities[:, CLASSES.index("mel")] = [0.8, 0.4, 0.3, 0.1]
    result = scores(probabilities, labels, CLASSES)
    assert result["melanoma_auc"] == 1.0  # every melanoma scored above every nevus
    assert result["balanced_accuracy"] == pytest.approx((0.5 + 1.0) / 2)  # one melanoma called a nevus
    assert result["log_loss"] == pytest.approx(-np.mean(np.log([0.8, 0.4, 0.7, 0.9])))
    assert result["classes"] == ["mel", "nv"]
