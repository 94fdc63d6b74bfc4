"""Opening images that may come from anyone: only Pillow's PNG, JPEG and WebP decoders, never a delegate.

A project folder can hold a file named `.png` that is something else. Pillow, left to itself,
identifies a file by its bytes and opens any format it knows: an EPS file is handed to Ghostscript,
a program that runs the PostScript in it. Every image ltxflow decodes (keyframes, colour
references, its own thumbnails) is opened through open_image, which lets Pillow try only the
decoders named here.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

# What a keyframe's name may end in, and the Pillow decoder a file of that name is read with.
FORMATS_BY_EXTENSION = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
FORMATS = ("PNG", "JPEG", "WEBP")
FORMAT_NAMES = "PNG, JPEG or WebP"
# The format Pillow reports for an image each decoder opened: its JPEG decoder opens a JPEG that
# holds more than one picture (many cameras write one) as MPO.
_DECODED_BY = {"PNG": "PNG", "JPEG": "JPEG", "MPO": "JPEG", "WEBP": "WEBP"}


def open_image(source: Path | str | IO[bytes], formats: tuple[str, ...] = FORMATS):
    """The image in `source` (a path or a binary file), opened lazily as Image.open does; the
    caller closes it (use it in a `with`). Only the decoders in `formats` (Pillow's names, a
    subset of FORMATS) are tried, whatever the name says: any other file, an EPS or a TIFF as
    much as text, raises PIL.UnidentifiedImageError, an OSError, as Pillow does for a file it
    cannot identify. A PNG named .jpg opens: all three decoders are equally safe."""
    from PIL import Image, UnidentifiedImageError

    img = Image.open(source, formats=list(formats))
    if _DECODED_BY.get(img.format or "") not in formats:  # a plugin that registered under another name
        img.close()
        raise UnidentifiedImageError(f"a {img.format} image, not {' or '.join(formats)}")
    return img
