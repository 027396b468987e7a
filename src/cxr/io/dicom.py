"""DICOM X-rays as 8-bit display pixels, the way a radiology viewer shows them.

Stored values go through the modality LUT (rescale slope/intercept), then the VOI LUT or window the
file specifies (else a percentile stretch), and MONOCHROME1 films (white = no attenuation) are
inverted so that bone is bright as in every other format. Compressed transfer syntaxes decode where
one of pydicom's decoders is installed; where none is, the file is skipped with the syntax named.
"""

from __future__ import annotations

import io

import numpy as np

from cxr.io.pixels import DecodedImage, UnreadableImage, check_size, stretch_to_uint8


def decode_dicom(data: bytes, max_pixels: int | None = None) -> DecodedImage:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        dataset = pydicom.dcmread(io.BytesIO(data), force=True)
    except (InvalidDicomError, EOFError, OSError, ValueError, TypeError, KeyError) as err:
        raise UnreadableImage(f"corrupt DICOM ({type(err).__name__}: {err})") from None
    if "PixelData" not in dataset:
        if data[128:132] != b"DICM" and "SOPClassUID" not in dataset and "Modality" not in dataset:
            raise UnreadableImage("not a DICOM file (no DICM header and no DICOM identity): a file misnamed .dcm?")
        raise UnreadableImage("DICOM without pixel data (a report or structured document, not an image)")
    rows, columns = int(dataset.get("Rows", 0)), int(dataset.get("Columns", 0))
    check_size(columns, rows, max_pixels)
    # file_meta is an attribute, not an element: `"file_meta" in dataset` would look for a tag.
    meta = getattr(dataset, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    try:
        pixels = dataset.pixel_array
    except (NotImplementedError, RuntimeError) as err:
        name = getattr(syntax, "name", str(syntax))
        raise UnreadableImage(f"DICOM transfer syntax {name} cannot be decoded here: install a pydicom decoder "
                              f"plugin for it (pylibjpeg or python-gdcm) ({err})".replace("\n", " ")) from None
    except (ValueError, AttributeError, KeyError, EOFError) as err:
        raise UnreadableImage(f"corrupt DICOM pixel data ({type(err).__name__}: {err})") from None
    if int(dataset.get("NumberOfFrames", 1) or 1) > 1:
        pixels = pixels[0]  # a radiograph series: its first film
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2"))
    if pixels.ndim == 3:
        # Colour DICOM (secondary captures of films): luminance, as for colour PNG and JPEG.
        pixels = pixels.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        return DecodedImage(stretch_to_uint8(pixels), "DICOM", photometric, int(dataset.get("BitsStored", 8)))
    values = apply_modality_lut(pixels, dataset)
    has_voi = "VOILUTSequence" in dataset or ("WindowCenter" in dataset and "WindowWidth" in dataset)
    if has_voi:
        values = apply_voi_lut(values, dataset, index=0)
    values = np.asarray(values, dtype=np.float64)
    if photometric == "MONOCHROME1":
        values = values.max() + values.min() - values
    if has_voi:
        # The window already chose what to show: map its range linearly, without a second stretch.
        low, high = values.min(), values.max()
        scaled = (values - low) / (high - low) * 255 if high > low else np.zeros_like(values)
        display = np.round(scaled).astype(np.uint8)
    else:
        display = stretch_to_uint8(values)
    return DecodedImage(display, "DICOM", photometric, int(dataset.get("BitsStored", 16)))
