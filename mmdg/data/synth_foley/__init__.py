"""SynthFoley: a procedurally generated audio-visual benchmark with tunable MMDG failure modes.

Each clip shows one object moving on a textured background ("video", plus its
analytic motion field "flow") while it makes a sound ("audio", a log-mel
spectrogram).  A class is a (motion, sound) pair.  Domains differ only in
recording conditions.  Three knobs switch on the effects studied in the book:
modality imbalance, a source/target shift concentrated on the dominant
modality, and source-specific cross-modal co-occurrences (Fusion Overfitting).

Modules: ``config`` (presets, condition tables, validation), ``factors`` (random streams and
latent factors), ``video`` and ``audio`` (rendering), ``benchmark`` (the class and its cache).
"""
from .benchmark import SynthFoley
from .config import (AUDIO_CONDITIONS, DOMAINS, FORMAT_VERSION, MAX_CLASSES, MODALITIES, MOTIONS,
                     PRESETS, SOUNDS, VISUAL_CONDITIONS)

__all__ = ["SynthFoley", "AUDIO_CONDITIONS", "DOMAINS", "FORMAT_VERSION", "MAX_CLASSES", "MODALITIES",
           "MOTIONS", "PRESETS", "SOUNDS", "VISUAL_CONDITIONS"]
