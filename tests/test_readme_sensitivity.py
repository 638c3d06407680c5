"""The README's table of how far one answer moves: each row against the committed study it comes from."""

from __future__ import annotations

import json

from dermfuse.sources import CHECKPOINTS

ROOT = CHECKPOINTS.parent
RESULTS = ROOT / "docs" / "results"


def _percent(value: float) -> str:
    return f"{100 * value:.1f} %"


def test_each_row_of_the_table_is_its_studys_numbers():
    def load(name: str) -> dict:
        return json.loads((RESULTS / f"{name}.json").read_text())

    capture, artefacts = load("capture")["conditions"], load("artefacts")["conditions"]
    resaved = load("stability")["paths"]["fast"]
    turned = [row for row in load("orientation")["orientations"].values() if "top_class_changed" in row]
    casts = [row for name, row in capture.items() if name.startswith("colour cast")]
    assert len(turned) == 7 and len(casts) == 4 and capture["as it is"]["balanced_accuracy"] == artefacts["as it is"]["balanced_accuracy"]

    def spread(rows: list, key: str, show) -> str:
        return f"{show(min(r[key] for r in rows))}–{show(max(r[key] for r in rows))}".replace(" %–", "–")

    def bacc(row: dict) -> str:
        return f"{row['balanced_accuracy']:.3f}"

    q90, dark, bright, q50 = (capture[n] for n in ("JPEG quality 90", "darker (× 0.8)", "brighter (× 1.25)", "JPEG quality 50"))
    kinds = [artefacts[k] for k in ("bubble", "marking", "ruler")]
    rows = [
        f"| saved once more as JPEG, quality 95 / 90 | {_percent(resaved['top_class_changed'])} / "
        f"{_percent(q90['top_class_changed'])} | — / {bacc(q90)} |",
        f"| with air bubbles / an ink marking / a ruler added | {' / '.join(_percent(r['top_class_changed']) for r in kinds)} | "
        f"{' / '.join(bacc(r) for r in kinds)} |",
        f"| darker (× 0.8) / brighter (× 1.25) | {_percent(dark['top_class_changed'])} / {_percent(bright['top_class_changed'])} "
        f"| {bacc(dark)} / {bacc(bright)} |",
        f"| turned or mirrored (each of 7 ways) | {spread(turned, 'top_class_changed', _percent)} | "
        f"{spread(turned, 'balanced_accuracy', lambda v: f'{v:.3f}')} |",
        f"| saved as JPEG at quality 50 | {_percent(q50['top_class_changed'])} | {bacc(q50)} |",
        f"| under a 15 % colour cast (each of 4) | {spread(casts, 'top_class_changed', _percent)} | "
        f"{spread(casts, 'balanced_accuracy', lambda v: f'{v:.3f}')} |",
    ]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for row in rows:
        assert row in readme, row
    assert f"(balanced accuracy {bacc(capture['as it is'])} as they are" in " ".join(readme.split())
