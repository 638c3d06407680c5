"""``DermFusePipeline``: image + metadata → mask, lesion image, calibrated scores, heatmaps, numbers.

The one function the app, the CLI and the evaluation call. Steps (``design.md``'s flow):
check the metadata and load the image (EXIF, RGB, size guard), each once, here and nowhere else
(callers pass raw values; a bad one raises ``ValueError``) → segment → clean mask → lesion image →
both encoders once → head with and without metadata → calibrated probabilities → optional Grad-CAM of both
streams through the head alone (a degenerate map replaced by the fallback method's, ``explain.py``), the lesion
stream's map put back at the lesion image's box → lesion focus, measurements, the ABCD criteria (``criteria.py``,
from the same mask and pixels), OOD score, the assessability gate (``assess.py``: can this image be judged at
all, and if not, why), warnings.

Speed: on a CPU with bf16 support (checked, not assumed) the segmenter and the encoders run under
bf16 autocast in channels-last layout; the small head always runs in fp32. The per-image work around
the networks (mask cleaning, lesion images, the checks and descriptions: OpenCV and NumPy, which release the
GIL) runs on a thread per core. Calls are serialised by a lock: one image already keeps every
core busy, and Grad-CAM's hooks must not see another call's forward pass. That makes the pipeline safe to
share between threads.
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from PIL import Image

from . import vocab
from .data.colour_constancy import white_balanced
from .data.field_of_view import lit_field
from .data.io import load_image, load_image_and_mask
from .data.metadata import age_caution, age_in_range, encode_normalized, normalize_metadata
from .data.transforms import image_view, to_tensor, view_box
from .diagnosis import Diagnosis
from .explain import explain_streams
from .lesion import filled, lesion_crop_box, lesion_image_fn, masks_from_logits, paste_into_frame
from .measure import lesion_focus, measure_lesion
from .models import DermFuse
from .models.flips import flipped_views, repeated, view_mean
from .models.inference import inference_copy
from .assess import assess, compression_warning
from .criteria import lesion_criteria
from .ood import capture_statistics, combined_score, largest_difference, ood_distances, pooled_features, thumbnail
from .operating_points import place
from .skin_tone import describe as describe_tone, measure_skin_tone, rare_tone_caution

STREAMS = ("image", "lesion")
CENTRAL_SQUARE_NOTE = ("It saw the central square of the image, as the model's training images were; the rest was "
                       "outside its view.")
LIT_FIELD_NOTE = ("It saw the dermatoscope's lit field, with the dark frame around it filled in from the skin next to it; "
                  "the rest was outside its view.")
FILLED_FRAME_CAUTION = ("The dark frame around the dermatoscope's field of view was filled in from the skin next to it "
                        "before the classifier saw the image. The model learned from images without such a frame; even "
                        "filled in, a frame can move its scores.")


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast is fast and supported on ``device`` (asks the runtime, not the CPU name)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def cases_twice(maps: torch.Tensor, views: int) -> torch.Tensor:
    """(V·B, ...) view-major maps → (V·2B, ...): each view's B cases twice, for 2B cases (the head's with and without
    metadata in one forward)."""
    per_view = maps.reshape(views, -1, *maps.shape[1:])  # (V, B, ...)
    return torch.cat([per_view, per_view], dim=1).flatten(0, 1)


def frame_size(image: Image.Image | np.ndarray) -> tuple[int, int]:
    """(width, height) of a PIL image or of its pixels (H, W, 3), as PIL's ``image.size``."""
    return image.size if isinstance(image, Image.Image) else (image.shape[1], image.shape[0])


@dataclass
class Case:
    """One input: an image (path, bytes, PIL or array) and what is known about the patient.

    ``mask`` (optional) is a known lesion mask (e.g. an expert's), used instead of the segmenter's.
    """

    image: object
    age: object = None
    sex: object = None
    site: object = None
    image_id: str | None = None
    mask: object = None


class DermFusePipeline:
    """Segment, classify and explain dermoscopy images with one ``DermFuse`` model."""

    def __init__(self, model: DermFuse, device: str | torch.device = "cpu", fast: bool | None = None):
        self.device = torch.device(device)
        # Inference only: no parameter needs a gradient (Grad-CAM needs them at the encoder maps alone).
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.fast = bf16_supported(self.device) if fast is None else bool(fast)
        if self.fast and not bf16_supported(self.device):
            raise ValueError(f"fast=True needs bf16 support, which {self.device} lacks: use fast=False")
        # The networks that run without gradients (segmenter, encoders): on the fast path a copy with batch
        # norms folded, bf16 convolutions and channels-last (models/inference.py), made here: build a new
        # pipeline after changing the model's weights. ``self.model`` stays as loaded (fp32: the head, which
        # Grad-CAM back-propagates through, runs from it).
        self._networks = {name: inference_copy(network) if self.fast else network
                          for name, network in model.inference_networks().items()}
        self.make_lesion_image = lesion_image_fn(model.lesion_mode, model.lesion_margin, model.mean)
        self._lock = threading.Lock()
        # Between the networks' passes the cores are free: the per-image steps share them (``_each``).
        self._workers = ThreadPoolExecutor(max_workers=max(1, torch.get_num_threads()), thread_name_prefix="dermfuse")

    @classmethod
    def from_pretrained(cls, source: str, device: str = "cpu", fast: bool | None = None, **kwargs) -> "DermFusePipeline":
        """Load the model from a local folder or a Hugging Face Hub repo id."""
        return cls(DermFuse.from_pretrained(source, **kwargs), device=device, fast=fast)

    # ----------------------------------------------------------------------------------------
    def __call__(self, image, age=None, sex=None, site=None, explain: bool = True, attention: bool = False,
                 mask=None, lesion_stream: bool = True, use_metadata: bool = True, image_id: str | None = None
                 ) -> Diagnosis:
        """Diagnose one image. ``explain`` adds Grad-CAM of both streams; ``attention`` the segmenter's
        gate maps; ``mask`` replaces the segmenter's mask with a known one; ``lesion_stream=False``
        blinds the lesion stream and ``use_metadata=False`` withholds the metadata (see :meth:`predict`);
        ``image_id`` names the image in the result (the file name without its suffix, as the CLI's)."""
        cases = [Case(image, age, sex, site, image_id=image_id, mask=mask)]
        return self.predict(cases, explain=explain, attention=attention, lesion_stream=lesion_stream,
                            use_metadata=use_metadata)[0]  # fmt: skip

    def predict(self, cases: list[Case], explain: bool = False, attention: bool = False,
                lesion_stream: bool = True, use_metadata: bool = True, describe: bool = True) -> list[Diagnosis]:
        """Diagnose a batch of cases in one pass of each network (the evaluation path).

        Each case's metadata are checked first (cheap: a bad value fails before any image is read),
        then its image is decoded, once; the result carries both (``Diagnosis.image``, ``.metadata``).
        The model is given only the fields it learned from (:attr:`DermFuse.metadata_fields`): the
        others are checked, kept in the result, and shown to it as unknown, so a model trained without
        (some) metadata is not moved by values it never learned. ``Diagnosis.metadata_used`` names the
        known fields it was given. ``lesion_stream=False`` is the teaching switch: the lesion encoder
        is shown a blank image (the normalisation mean, all zeros after normalisation) instead of the
        lesion, so a user can see how much the prediction leans on it. ``use_metadata=False`` is the
        other one: the model is given no metadata at all. The model itself is unchanged.
        ``describe=False`` leaves out what describes the lesion to a reader but is no score (the ABCD
        criteria, the measurements, the skin tone, and the border and skin-tone cautions that rest on
        them): evaluation needs scores and masks only, and those per-image analyses cost more than the
        networks. The assessability check and the OOD warning always run.
        """
        ages, sexes, sites = normalize_metadata([c.age for c in cases], [c.sex for c in cases], [c.site for c in cases])
        described = [{"age": age, "sex": sex, "site": site} for age, sex, site in zip(ages, sexes, sites)]
        fields = self.model.metadata_fields if use_metadata else ()
        seen = [{f: value if f in fields else (None if f == "age" else vocab.UNKNOWN) for f, value in case.items()}
                for case in described]  # what the model is given: the other fields unknown,
        for case in seen:  # and an age outside its training images' as the nearer end of theirs
            case["age"] = age_in_range(case["age"], self.model.age_range)
        used = [[f for f in vocab.METADATA_FIELDS if case[f] not in (None, vocab.UNKNOWN)] for case in seen]
        images, known_masks = [], []
        for case in cases:
            if case.mask is None:
                images.append(load_image(case.image))
                known_masks.append(None)
            else:
                image, mask = load_image_and_mask(case.image, case.mask)
                images.append(image)
                known_masks.append(mask)
        metadata = encode_normalized(*([case[f] for case in seen] for f in vocab.METADATA_FIELDS))
        with self._lock:
            return self._predict(cases, images, known_masks, metadata, described, used, explain, attention,
                                 lesion_stream, describe)

    def _autocast(self):
        if not self.fast:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _each(self, function, *per_image) -> list:
        """``list(map(function, *per_image))``, the images shared among the pipeline's threads; in order, and the
        first error raised as it is. One image runs here, in the caller's thread."""
        if len(per_image[0]) <= 1:
            return list(map(function, *per_image))
        return list(self._workers.map(function, *per_image))

    def _batch(self, images: list, size) -> torch.Tensor:
        # Here, not on the workers: torch called from them slowed both paths' networks (each calling thread has its
        # own OpenMP team), where the images' resizing alone would have gained a few milliseconds.
        batch = torch.stack([to_tensor(image, size, self.model.mean, self.model.std) for image in images]).to(self.device)
        return batch.contiguous(memory_format=torch.channels_last) if self.fast else batch

    def segment(self, images: list, attention: bool = False):
        """Mask probabilities and cleaned masks at each image's resolution (``masks_from_logits``, as
        stage 2's mask cache), and the gates' α maps if asked. ``images``: PIL images or their uint8 pixels (H, W, 3)."""
        with torch.inference_mode(), self._autocast():
            out = self._networks["segmenter"](self._batch(images, self.model.segmentation_size), return_attention=attention)
        logits, gates = out if attention else (out, None)
        sizes = [frame_size(image) for image in images]
        probability_maps, masks = masks_from_logits(logits, sizes, each=self._each)
        if gates is not None:
            gates = [[cv2.resize(g[i, 0].float().cpu().numpy(), size, interpolation=cv2.INTER_LINEAR) for g in gates]
                     for i, size in enumerate(sizes)]
        return probability_maps, masks, gates

    def classifier_view(self, images: list) -> tuple[list, list]:
        """The images as the classifier's streams see them, and each one's lit field (a box, or ``None``: the whole
        frame). Where the model's config says ``dark_frame: "filled"``, a dermatoscope's dark round frame is filled in
        from the skin next to it and the image stream's view is taken from the lit field's box
        (:func:`~dermfuse.data.field_of_view.lit_field`); then each image is white-balanced to the model's light
        (:func:`~dermfuse.data.colour_constancy.white_balanced`) where its config holds one. The segmenter, the gate and
        the measurements see the images as they are."""
        fields = [None] * len(images)
        if self.model.dark_frame == "filled" and images:
            images, fields = map(list, zip(*self._each(lambda image: lit_field(np.asarray(image)), images)))
        reference = self.model.white_balance
        if reference is not None:
            images = self._each(lambda image: white_balanced(image, reference), images)
        return images, fields

    def encode(self, images: list, lesions: list | None, fields: list | None = None):
        """Both encoders once, no gradients: maps (V·B, C, h, w) as float32, the model's ``flip_views`` views of each
        image, view-major (``models/flips.py``: rows ``:B`` are the images as they are). Images and lesion images: PIL
        or uint8 pixels, and the images' lit fields, as :meth:`classifier_view` gives them. The image encoder sees each
        image as the model's framing says (:func:`~dermfuse.data.transforms.image_view`), within its lit field."""
        size, views = self.model.image_size, self.model.flip_views
        fields = fields or [None] * len(images)
        images = [image_view(image, self.model.image_framing, field) for image, field in zip(images, fields)]
        if lesions is None and "lesion" in self._networks:
            raise ValueError("this classifier has a lesion stream: pass the lesion images as well")
        with torch.inference_mode(), self._autocast():
            image_batch = flipped_views(self._batch(images, size), views)  # (V·B, 3, H, W)
            image_maps = self._networks["image"].forward_features(image_batch)  # (V·B, C, h, w)
            lesion_maps = (self._networks["lesion"].forward_features(flipped_views(self._batch(lesions, size), views))
                           if lesions is not None else None)  # fmt: skip
        as_float = lambda maps: None if maps is None else maps.float().contiguous().clone()  # noqa: E731
        return as_float(image_maps), as_float(lesion_maps)

    def head_logits(self, image_maps, lesion_maps, metadata: dict) -> torch.Tensor:
        """Logits (B, classes) from encoder maps (V·B, as :meth:`encode` gives them) and encoded metadata (B each):
        the mean over the views. The head runs in fp32."""
        views = self.model.flip_views
        with torch.inference_mode():
            logits = self.model.classifier.forward_head(image_maps, lesion_maps,
                                                        *(repeated(m, views) for m in self._metadata(metadata)))
        return view_mean(logits, views)

    def calibrated(self, logits: torch.Tensor) -> np.ndarray:
        """Calibrated probabilities (the model's prior shift and temperature)."""
        return torch.softmax(self.model.calibrate(logits.float()), dim=1).cpu().numpy()

    def _metadata(self, metadata: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return tuple(metadata[k].to(self.device) for k in ("age", "sex", "site"))

    def _predict(self, cases, images, known_masks, metadata, described, used, explain, attention, lesion_stream,
                 describe) -> list[Diagnosis]:
        model = self.model
        qualities = [image.info.get("jpeg_quality") for image in images]  # load_image keeps it: the pixels lose it
        arrays = [np.array(image) for image in images]  # (H, W, 3) uint8 each, converted once for every step
        probability_maps, predicted, gates = self.segment(arrays, attention)
        masks = [mask if known is None else known for mask, known in zip(predicted, known_masks)]
        seen, fields = self.classifier_view(arrays)  # the streams' pixels: frame filled, white-balanced where asked
        if lesion_stream:
            lesions = self._each(self.make_lesion_image, seen, masks)
        else:
            blank = tuple(int(round(255 * m)) for m in model.mean)
            lesions = [filled(model.image_size, blank) for _ in arrays]
        use_lesion = model.classifier.use_lesion_stream
        image_maps, lesion_maps = self.encode(seen, lesions if use_lesion else None, fields)
        n = len(cases)
        unknown = encode_normalized([None] * n, [vocab.UNKNOWN] * n, [vocab.UNKNOWN] * n)
        explained = None
        if explain:  # one forward + one backward through the head: the scores and both streams' CAMs
            explained = explain_streams(model.classifier, image_maps, lesion_maps, self._metadata(metadata),
                                        model.image_size, views=model.flip_views)
            logits = explained.logits
            without_logits = self.head_logits(image_maps, lesion_maps, unknown)
        else:  # with and without metadata in one forward of the head
            twice = lambda maps: None if maps is None else cases_twice(maps, model.flip_views)  # noqa: E731
            both = self.head_logits(twice(image_maps), twice(lesion_maps),
                                    {k: torch.cat([metadata[k], unknown[k]]) for k in metadata})
            logits, without_logits = both[:n], both[n:]
        probabilities, without_metadata = self.calibrated(logits), self.calibrated(without_logits)
        ood, gate = model.ood, model.gate
        scores = distances = pooled = None
        thumbnails = self._each(thumbnail, arrays)  # what the capture statistics and the gate look at
        if ood is not None:
            capture = np.stack(self._each(capture_statistics, thumbnails))
            pooled = pooled_features(image_maps[:n])  # (B, C): the images as they are, not flipped
            distances = ood_distances(ood, pooled, capture)
            scores = combined_score(distances)

        def ood_warning(i: int) -> tuple[float, str] | None:
            """The image's OOD score and what sets it apart most, where the score is over the threshold."""
            if scores is None or not scores[i] > ood["threshold"]:
                return None
            return float(scores[i]), largest_difference(ood, float(distances[0][i]), capture[i])

        def diagnosis(i: int, case: Case, pixels: np.ndarray, mask: np.ndarray) -> Diagnosis:
            top = int(np.argmax(probabilities[i]))
            box = lesion_crop_box(mask, model.lesion_mode, model.lesion_margin) if lesion_stream else None
            heatmaps = focus = methods = notes = None
            if explained is not None:
                streams = [s for s in explained.maps if lesion_stream or s != "lesion"]
                methods = {s: explained.methods[s][i] for s in streams if explained.methods[s][i]}
                notes = {s: explained.notes[s][i] for s in streams if explained.notes[s][i]}
                # Each map is put back where its stream looked: the lesion stream at ``box``, the image stream at the
                # part of the frame its framing shows it (the whole frame, or its central square; within the lit field
                # where a dark frame was filled in).
                seen = {"lesion": box, "image": view_box(*frame_size(pixels), model.image_framing, fields[i])}
                if seen["image"] is not None and "image" in streams:
                    note = CENTRAL_SQUARE_NOTE if fields[i] is None else LIT_FIELD_NOTE
                    notes["image"] = " ".join(filter(None, (notes.get("image"), note)))
                heatmaps = {s: paste_into_frame(explained.maps[s][i], seen[s], mask.shape) for s in methods}
                focus = {s: lesion_focus(heat, mask) for s, heat in heatmaps.items()} if mask.any() else None
            criteria = lesion_criteria(pixels, mask) if describe else None  # the ABCD colours, counted once for both
            measurements = (measure_lesion(pixels, mask, None if criteria is None else criteria.colours.numbers["colours"])
                            if describe else None)  # fmt: skip
            deep = None if distances is None else float(distances[0][i])
            reasons, dermoscopy, numbers = assess(thumbnails[i], probability_maps[i], mask, gate, deep,
                                                  None if pooled is None else pooled[i], model.min_image_side,
                                                  model.min_sharpness, model.min_lesion_contrast)
            tone = describe_tone(measure_skin_tone(pixels, mask), model.skin_tone) if describe else None
            cautions = [] if reasons else [  # they speak of the scores
                caution for caution in (FILLED_FRAME_CAUTION if fields[i] is not None else None,
                                        rare_tone_caution(tone, model.skin_tone),
                                        compression_warning(qualities[i], *frame_size(pixels)),
                                        age_caution(described[i]["age"], model.age_range) if "age" in used[i] else None)
                if caution]
            return Diagnosis(
                image_id=case.image_id,
                classes=list(model.classes),
                probabilities=probabilities[i].tolist(),
                probabilities_without_metadata=without_metadata[i].tolist(),
                metadata=described[i],
                metadata_used=used[i],
                image=pixels,
                mask=mask,
                mask_probability=probability_maps[i].astype(np.float32),
                lesion_image=lesions[i],
                heatmaps=heatmaps,
                lesion_focus=focus,
                heatmap_methods=methods,
                heatmap_notes=notes,
                lesion_box=None if box is None else list(box),
                attention=gates[i] if gates is not None else None,
                measurements=measurements.to_dict() if measurements else None,
                ood_score=None if scores is None else float(scores[i]),
                ood_threshold=None if ood is None else float(ood["threshold"]),
                skin_tone=tone,
                # The thresholds were set on the whole model's scores: not for the teaching view's blinded lesion stream.
                operating_points=place(probabilities[i], model.classes, model.operating_points) if lesion_stream else None,
                model=self.model_info(),
                warnings=self._warnings(mask, measurements, ood_warning(i), lesion_stream, assessable=not reasons) + cautions,
                top_index=top,
                assessable=not reasons,
                reasons=reasons,
                dermoscopy_score=dermoscopy,
                assessment_numbers=numbers,
                abcd=None if criteria is None else criteria.to_dict(),
            )

        return self._each(diagnosis, range(n), cases, arrays, masks)

    def _warnings(self, mask, measurements, unlike: tuple[float, str] | None, lesion_stream: bool = True,
                  assessable: bool = True) -> list[str]:
        model, warnings = self.model, []
        if not lesion_stream and model.classifier.use_lesion_stream:
            warnings.append("Teaching view: the lesion stream was shown a blank image, so these scores ignore it.")
        if "phantom" in model.dataset.lower():
            warnings.append(
                "Demo model trained on synthetic phantom images, not on patients: its output is not a diagnosis."
            )
        if model.dataset == "untrained":
            warnings.append("Untrained model (random weights): its output means nothing.")
        if not mask.any():
            warnings.append("No lesion found: the lesion stream saw the whole image.")
        elif measurements is not None and measurements.touches_border:
            warnings.append("The lesion touches the image border: part of it may be outside the frame.")
        if unlike is not None:  # (score, what sets the image apart most) where the score is over the threshold
            score, difference = unlike
            warnings.append(
                f"This image looks unlike the training images (out-of-distribution score {score:.2f} > "
                f"threshold {model.ood['threshold']:.2f}), {difference}."
                + (" The scores are shown unchanged; treat them with extra caution." if assessable else "")
            )
        return warnings

    def model_info(self) -> dict:
        model = self.model
        return {"name": model.name, "id": model.source["id"], "revision": model.source["revision"],
                "dataset": model.dataset, "temperature": model.temperature,
                "metadata_fields": list(model.metadata_fields),
                "white_balance": model.white_balance,  # the light the streams' images were balanced to, or None
                "dark_frame": model.dark_frame,  # a dermatoscope's dark frame kept, or filled in (data/field_of_view.py)
                "flip_views": model.flip_views}  # how many orientations of the image its score averages (models/flips.py)

    def ood_inputs(self, images: list) -> tuple[np.ndarray, np.ndarray]:
        """Pooled image-encoder features and capture statistics, the inputs of :func:`dermfuse.ood.fit_ood`."""
        images = [load_image(image) for image in images]
        seen, fields = self.classifier_view(images)
        with self._lock:
            image_maps, _ = self.encode(seen, seen if self.model.classifier.use_lesion_stream else None, fields)
        capture = np.stack([capture_statistics(np.asarray(image)) for image in images])
        return pooled_features(image_maps[:len(images)]), capture
