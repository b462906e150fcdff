"""Datasets in their published folder layouts, their validation, and the synthetic default.

- ``layouts``: which files each split holds in each published layout (MVTec AD, MPDD, MVTec 3D-AD,
  VisA, MVTec AD 2, MVTec LOCO, BTAD), and the layout recognised from a folder;
- ``folders``, ``mvtec``: category folders, samples, decoding, splits and the torch dataset;
- ``validate``: every problem of a dataset at once (``masf-bench data check``);
- ``pseudo``: the validation split's pseudo-anomalies;
- ``synth*``: the synthetic MVTec-layout dataset (``synth_layouts``: written in every other layout).

May import: the base (``masf.errors``, ...); never the method, the trial, the runner, the report or the CLI.
"""

# The 15 MVTec AD categories; the first five are textures, the rest objects.
TEXTURE_CATEGORIES = ("carpet", "grid", "leather", "tile", "wood")
OBJECT_CATEGORIES = (
    "bottle", "cable", "capsule", "hazelnut", "metal_nut",
    "pill", "screw", "toothbrush", "transistor", "zipper",
)
MVTEC_CATEGORIES = tuple(sorted(TEXTURE_CATEGORIES + OBJECT_CATEGORIES))
