"""Host-side preparation of conditioning images: any size in, a square float image out."""

from __future__ import annotations

import numpy as np
from PIL import Image


def prepare_images(images: np.ndarray, size: int, where: str) -> np.ndarray:
    """uint8 [B, H, W, 3] (or float in [0, 1]) -> float32 [B, size, size, 3] in [0, 1]:
    centre-cropped to a square, then resized with PIL's bicubic filter (antialiased when
    shrinking, as torchvision's antialiased bicubic resize of the reference's preprocessing)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"condition {where}: images: expected [B, H, W, 3], got {images.shape}")
    if images.dtype != np.uint8:
        if not np.all(np.isfinite(images)) or images.min() < 0 or images.max() > 1:
            raise ValueError(
                f"condition {where}: images: expected uint8 or floats in [0, 1], got "
                f"{images.dtype} in [{images.min()}, {images.max()}]"
            )
        images = (images * 255).round().astype(np.uint8)
    out = np.empty((len(images), size, size, 3), np.float32)
    for i, image in enumerate(images):
        h, w = image.shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        crop = Image.fromarray(image[top : top + side, left : left + side])
        resized = crop.resize((size, size), Image.Resampling.BICUBIC)
        out[i] = np.asarray(resized, np.float32) / 255.0
    return out
