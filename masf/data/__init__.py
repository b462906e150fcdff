"""Datasets in the MVTec AD folder layout, their validation, and the synthetic default.

- ``folders``, ``mvtec``: the layout, samples, splits and the torch dataset;
- ``validate``: every problem of a dataset at once (``masf-bench data check``);
- ``pseudo``: the validation split's pseudo-anomalies;
- ``synth*``: the synthetic MVTec-layout dataset.

May import: the base (``masf.errors``, ...); never the method, the trial, the runner, the report or the CLI.
"""

# The 15 MVTec AD categories; the first five are textures, the rest objects.
TEXTURE_CATEGORIES = ("carpet", "grid", "leather", "tile", "wood")
OBJECT_CATEGORIES = (
    "bottle", "cable", "capsule", "hazelnut", "metal_nut",
    "pill", "screw", "toothbrush", "transistor", "zipper",
)
MVTEC_CATEGORIES = tuple(sorted(TEXTURE_CATEGORIES + OBJECT_CATEGORIES))
