#!/usr/bin/env python3
"""The reference side of the PDQ benchmark: Meta's C++ core through the `pdqhash` binding, on
Pillow-decoded RGB pixels, as users call it. Prints `pdq_hex,quality,path` per image in the
order given (files, or directories listed in sorted order), like `haven hash`.

    reference.py [--jobs N] PATH...
"""
import os
import sys

import numpy as np
import pdqhash
from PIL import Image


def hash_one(path):
    img = Image.open(path)
    img = img.convert("RGB")
    bits, quality = pdqhash.compute(np.asarray(img))
    # bits[0] is the reference's bit 255: the first hex digit's high bit.
    packed = np.packbits(bits.astype(np.uint8))
    return "%s,%d,%s" % (packed.tobytes().hex(), quality, path)


def expand(paths):
    out = []
    for p in paths:
        if os.path.isdir(p):
            for name in sorted(os.listdir(p)):
                out.append(os.path.join(p, name))
        else:
            out.append(p)
    return out


def main(argv):
    jobs = 1
    if argv[:1] == ["--jobs"]:
        jobs = int(argv[1])
        argv = argv[2:]
    files = expand(argv)
    if jobs == 1:
        lines = map(hash_one, files)
    else:
        from multiprocessing import Pool

        lines = Pool(jobs).imap(hash_one, files, chunksize=4)
    out = sys.stdout
    for line in lines:
        out.write(line + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
