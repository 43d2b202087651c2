"""PDQ perceptual hashes (Facebook's PDQ, through the ``pdqhash`` bindings of the reference C++).

A hash is 256 bits written as 64 hex digits in the reference's order (the form ThreatExchange and
other PDQ tools exchange), so lists from elsewhere compare with ours. Two hashes within Hamming
distance 31 are the same picture by PDQ's own recommendation; quality (0-100) below 50 means the
picture has too little structure for its hash to be trusted.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

PDQ_BITS = 256


def pdq(image: Image.Image) -> tuple[str, int]:
    """The PDQ hash (64 hex digits) and quality of an RGB image."""
    import pdqhash

    bits, quality = pdqhash.compute(np.asarray(image.convert("RGB")))
    # pdqhash returns the bits most significant first, word 15 down to word 0: the hex order.
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex(), int(quality)
