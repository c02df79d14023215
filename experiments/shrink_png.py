#!/usr/bin/env python3
"""Rewrites PNG figures as 8-bit palette images (a plot uses a few dozen
colours), so the committed figures stay small (~4x smaller than matplotlib's
RGBA output). usage: shrink_png.py FIG.png..."""
import sys

from PIL import Image

for path in sys.argv[1:]:
    img = Image.open(path).convert("RGB")
    img.quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
