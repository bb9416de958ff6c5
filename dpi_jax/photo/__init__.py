"""Whole photos: detect faces (:mod:`.detect`), align them to the FFHQ template (:mod:`.align`), restore them with DPI
and paste them back into the upscaled photo (:mod:`.paste`); :mod:`.pipeline` is ``sample.py``'s photo mode."""
