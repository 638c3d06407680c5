"""Constants every layer shares, in a module that imports nothing of ours (the base layer).

Data, models, the lesion image and the app all read normalisation statistics and lesion modes from
here, so each is defined once; networks never need to import the data package for them (timm keeps
its ``timm/data/constants.py`` import-free for the same reason).
"""

from __future__ import annotations

# Normalisation statistics of the ImageNet-trained backbones (timm's names and values).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
# TensorFlow-trained backbones (EfficientNet-Lite) scale inputs to [-1, 1]: mean = std = 0.5.
INCEPTION_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
INCEPTION_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)

# How the lesion stream's input is made from the image and the mask (see dermfuse/lesion.py).
LESION_MODES: tuple[str, ...] = ("crop_mask", "mask", "crop")

# How the image stream sees a frame (dermfuse/data/transforms.py, ``view_box``): the whole frame resized to the
# encoder's square input, or its central square, as HAM10000's prepared images are (the central 450×450 of each
# 600×450 original, ../shared/data/README.md), so a 4:3 upload is not squeezed into a shape the model never saw.
IMAGE_FRAMINGS: tuple[str, ...] = ("whole", "central_square")

# What the classifier's streams see of a dermatoscope's dark round frame (dermfuse/data/field_of_view.py): the image as it
# is, or the frame filled in from the skin next to it and the image stream's view taken from the lit field's box.
DARK_FRAMES: tuple[str, ...] = ("kept", "filled")
