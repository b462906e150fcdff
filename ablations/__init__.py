"""The ablation variants (variants.yaml) and the ablation grids (grids/), installed as the data package ``masf.ablations``."""
