"""Images that are not dermoscopy, assembled from what this machine has: the gate's negatives.

Nothing here is downloaded. Each image comes with its *source* (the kind of picture, the unit the
results are reported by) and its *group* (the picture it was cut from: crops of one photo share it,
so cross-fitting never sees a crop of a photo it is scored on):

- ``photos``: the colour photographs that scikit-image, scikit-learn, matplotlib and gradio ship
  (a cat, coffee, an astronaut, a rocket, a retina, histology, lions, a tower, flowers, ...), whole
  and as random crops, which include close-ups of skin (faces) and fur;
- ``grey_photos``: scikit-image's greyscale photographs (camera man, coins, moon, text, cells, ...);
- ``graphics``: logos, network drawings, a screenshot, rendered documents, charts and tables;
- ``synthetic``: flat colours, noise, gradients, shapes (``dermfuse.ood.non_dermoscopy_images`` and more);
- ``phantoms``: dermfuse's synthetic dermoscopy phantoms (drawn, not photographed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dermfuse import vocab
from dermfuse.data.phantom.generator import generate_phantom
from dermfuse.ood import non_dermoscopy_images

SOURCES = ("photos", "grey_photos", "graphics", "synthetic", "phantoms")
CROPS = {"photos": 6, "grey_photos": 2, "graphics": 2}  # random crops per picture, besides the whole picture


def _package_folder(module) -> Path:
    return Path(module.__file__).resolve().parent


def _pictures() -> list[tuple[str, str, np.ndarray]]:
    """(source, name, RGB uint8) for every picture the installed packages ship."""
    import gradio
    import matplotlib
    import networkx
    import skimage.data
    import sklearn.datasets

    out = []
    colour = ("astronaut", "chelsea", "coffee", "rocket", "retina", "immunohistochemistry", "hubble_deep_field",
              "motorcycle_left", "motorcycle_right")  # the ones scikit-image's wheel holds (others need a download)
    grey = ("camera", "coins", "moon", "page", "text", "cell", "clock", "microaneurysms", "brick", "grass", "gravel")
    for name in colour + grey:
        loader = getattr(skimage.data, name, None)
        if loader is None:
            continue
        picture = np.asarray(loader())
        out.append(("photos" if name in colour else "grey_photos", f"skimage:{name}", picture))
    for picture in sklearn.datasets.load_sample_images().images:
        out.append(("photos", f"sklearn:{len(out)}", picture))
    files = [
        ("photos", _package_folder(matplotlib) / "mpl-data/sample_data/grace_hopper.jpg"),
        ("graphics", _package_folder(matplotlib) / "mpl-data/sample_data/logo2.png"),
        *[("photos", path) for path in sorted((_package_folder(gradio) / "media_assets/images").glob("*.jp*g"))],
        *[("photos", path) for path in sorted((_package_folder(gradio) / "test_data").glob("cheetah2.jpg"))],
        *[("graphics", path) for path in sorted((_package_folder(gradio) / "media_assets/images").glob("*.png"))],
        *[("graphics", path) for path in sorted((_package_folder(gradio) / "media_assets/images").glob("*.gif"))],
        *[("graphics", path) for path in sorted((_package_folder(networkx) / "drawing/tests/baseline").glob("*.png"))],
    ]
    for source, path in files:
        if path.is_file():
            out.append((source, f"{path.parent.name}/{path.name}", np.asarray(Image.open(path).convert("RGB"))))
    return [(source, name, _rgb(picture)) for source, name, picture in out]


def _rgb(picture: np.ndarray) -> np.ndarray:
    picture = np.asarray(picture)
    if picture.dtype != np.uint8:
        picture = (255 * (picture - picture.min()) / max(np.ptp(picture), 1e-9)).astype(np.uint8)
    if picture.ndim == 2:
        picture = np.repeat(picture[..., None], 3, axis=2)
    return np.ascontiguousarray(picture[..., :3])


def _crop(picture: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    height, width = picture.shape[:2]
    area, aspect = rng.uniform(0.05, 0.5), np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    h = max(32, min(height, int(round(height * np.sqrt(area / aspect)))))
    w = max(32, min(width, int(round(width * np.sqrt(area * aspect)))))
    top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
    return np.ascontiguousarray(picture[top:top + h, left:left + w])


def _documents(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """Rendered pages of text and simple tables, like a scanned letter or a screenshot of a report."""
    font_path = Path(__import__("matplotlib").__file__).parent / "mpl-data/fonts/ttf/DejaVuSans.ttf"
    pages = []
    words = "patient lesion report date result normal follow-up clinic image left right scan note total".split()
    for i in range(count):
        width, height = int(rng.integers(400, 900)), int(rng.integers(300, 700))
        background = tuple(int(v) for v in rng.integers(225, 256, 3))
        page = Image.new("RGB", (width, height), background)
        draw = ImageDraw.Draw(page)
        font = ImageFont.truetype(str(font_path), int(rng.integers(11, 22)))
        y = 10
        while y < height - 20:
            line = " ".join(rng.choice(words, int(rng.integers(3, 10))))
            if i % 3 == 2:
                line = " | ".join(f"{rng.random() * 100:6.1f}" for _ in range(5))
            draw.text((10, y), line, fill=tuple(int(v) for v in rng.integers(0, 80, 3)), font=font)
            y += int(font.size * 1.6)
        if i % 2:
            x0 = int(rng.integers(0, width // 2))
            draw.rectangle((x0, 0, x0 + int(rng.integers(60, 200)), height), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        pages.append(np.asarray(page))
    return pages


def _charts(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """Matplotlib line, bar and scatter charts, rendered to pixels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charts = []
    for i in range(count):
        figure, axis = plt.subplots(figsize=(rng.uniform(4, 7), rng.uniform(3, 5)), dpi=80)
        x = np.arange(20)
        [axis.plot, axis.bar, axis.scatter][i % 3](x, rng.normal(0, 1, 20).cumsum())
        axis.set_title("Figure %d" % i)
        figure.canvas.draw()
        charts.append(np.asarray(figure.canvas.buffer_rgba())[..., :3].copy())
        plt.close(figure)
    return charts


def _synthetic(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """Flat colours, noise, gradients and drawn scenes, plus radial gradients and two-colour shapes."""
    images = list(non_dermoscopy_images(count // 2, seed=int(rng.integers(1 << 30))))
    for i in range(count - len(images)):
        size = (int(rng.integers(200, 500)), int(rng.integers(200, 500)))
        yy, xx = np.mgrid[0:size[0], 0:size[1]] / max(size)
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        t = np.hypot(yy - 0.5, xx - 0.5)[..., None] if i % 2 else xx[..., None]
        image = (a + (b - a) * np.clip(t, 0, 1)).astype(np.uint8)
        if i % 3 == 0:
            cy, cx, r = size[0] // 2, size[1] // 2, min(size) // 4
            image[cy - r:cy + r, cx - r:cx + r] = rng.integers(0, 256, 3)
        images.append(image)
    return images


def non_dermoscopy_set(seed: int = 0, phantoms: int = 40) -> list[tuple[str, str, np.ndarray]]:
    """(source, group, RGB uint8 image) for every negative; the same seed gives the same set."""
    rng = np.random.default_rng(seed)
    out = []
    for source, name, picture in _pictures():
        out.append((source, name, picture))
        out += [(source, name, _crop(picture, rng)) for _ in range(CROPS[source])]
    for i, page in enumerate(_documents(rng, 24)):
        out += [("graphics", f"document:{i}", page), ("graphics", f"document:{i}", _crop(page, rng))]
    out += [("graphics", f"chart:{i}", chart) for i, chart in enumerate(_charts(rng, 12))]
    out += [("synthetic", f"synthetic:{i}", image) for i, image in enumerate(_synthetic(rng, 60))]
    classes = vocab.HAM10000_CLASSES
    for i in range(phantoms):
        phantom = generate_phantom(classes[i % len(classes)], seed=10_000 + i)
        out.append(("phantoms", f"phantom:{i}", phantom.image))
    return out
