#!/usr/bin/env python3
"""Generates edge.csv: reference PDQ values (pdqhash 0.2.8, the C++ core) for synthetic images at
the sizes where the algorithm has special cases: the 5-pixel minimum, exactly 64x64 (the plain
hash skips the blur there, the dihedral one does not), window sizes around multiples of 128, and
extreme aspect ratios. Pixel (x, y) is RGB ((3x + y) % 256, 5y % 256, 7(x ^ y) % 256); the Rust
test rebuilds the same pixels.

    python gen_edge.py > edge.csv     (needs numpy and pdqhash==0.2.8)
"""
import numpy as np
import pdqhash

SIZES = [(5, 5), (6, 5), (5, 1000), (1000, 5), (4, 64), (64, 64), (63, 64), (65, 64), (64, 65),
         (127, 129), (128, 128), (129, 130), (256, 255), (257, 3001), (3000, 2000), (640, 480)]
NAMES = ["original", "rotate90", "rotate180", "rotate270", "flipx", "flipy", "flip_plus1",
         "flip_minus1"]


def pixels(w, h):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(3 * x + y) % 256, (5 * y) % 256, (7 * (x ^ y)) % 256], -1).astype(np.uint8)


def hexof(bits):
    return np.packbits(bits.astype(np.uint8)).tobytes().hex()


print("width,height,variant,pdq,quality")
for w, h in SIZES:
    a = pixels(w, h)
    bits, q = pdqhash.compute(a)
    print("%d,%d,plain,%s,%d" % (w, h, hexof(bits), q))
    hs, q = pdqhash.compute_dihedral(a)
    for n, b in zip(NAMES, hs):
        print("%d,%d,%s,%s,%d" % (w, h, n, hexof(b), q))
