"""Datasets in the MVTec AD folder layout, their validation, and the synthetic default."""

# The 15 MVTec AD categories; the first five are textures, the rest objects.
TEXTURE_CATEGORIES = ("carpet", "grid", "leather", "tile", "wood")
OBJECT_CATEGORIES = (
    "bottle", "cable", "capsule", "hazelnut", "metal_nut",
    "pill", "screw", "toothbrush", "transistor", "zipper",
)
MVTEC_CATEGORIES = tuple(sorted(TEXTURE_CATEGORIES + OBJECT_CATEGORIES))
