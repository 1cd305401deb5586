#!/usr/bin/env python3
"""Builds the PDQ benchmark set (outside the repo): every vector image converted to PPM and to
JPEG, plus synthesised photographs-like images (smooth fields, edges and noise) at common
camera/screen sizes. Deterministic.

    make_images.py VECTOR_IMAGES_DIR OUT_DIR
"""
import os
import sys

import numpy as np
from PIL import Image


def synth(w, h, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        fx, fy, ph = rng.uniform(0.5, 6, 2).tolist() + [rng.uniform(0, 6.3)]
        img[..., c] = 128 + 90 * np.sin(2 * np.pi * (fx * x / w + fy * y / h) + ph)
    for _ in range(12):  # rectangles: edges at random places
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        x1, y1 = x0 + rng.integers(w // 20, w // 3), y0 + rng.integers(h // 20, h // 3)
        img[y0:y1, x0:x1] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 8, img.shape).astype(np.float32)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def main(src, out):
    ppm = os.path.join(out, "ppm")
    jpg = os.path.join(out, "jpeg")
    os.makedirs(ppm, exist_ok=True)
    os.makedirs(jpg, exist_ok=True)
    images = []
    for name in sorted(os.listdir(src)):
        if name.endswith(".lossless.png"):
            continue  # same pixels as the JPEG beside it
        images.append((os.path.splitext(name)[0], Image.open(os.path.join(src, name)).convert("RGB")))
    sizes = [(640, 480), (1024, 768), (1280, 960), (1600, 1200), (1920, 1080), (2048, 1536)]
    for i in range(24):
        w, h = sizes[i % len(sizes)]
        images.append(("synth-%02d-%dx%d" % (i, w, h), synth(w, h, i)))
    for stem, img in images:
        img.save(os.path.join(ppm, stem + ".ppm"))
        img.save(os.path.join(jpg, stem + ".jpg"), quality=90)
    print("%d images in %s and %s" % (len(images), ppm, jpg))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
