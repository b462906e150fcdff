"""Every ablation variant: what it switches off, nothing else; and the baselines.

Adding a variant is one ``register_variant`` line; the CLI (``--variant``,
``--ablations``), the orchestrator and the tests pick it up from here. A
variant's switches are part of every trial's config fingerprint, so changing an
entry makes its runs a new configuration: old and new never merge in a table.
"""

from masf.variants import register_variant

register_variant("full", {}, "MASF with all five components")
register_variant("no_sdm", {"model.sdm.enabled": False}, "no spectral decomposition: F_spec = F")
register_variant("no_amfd", {"model.amfd.freq_view": False}, "no frequency-masked view: self-attention on the spatial view")
register_variant("no_samb", {"model.samb.enabled": False}, "no memory bank: cosine score only")
register_variant("no_ughf", {"model.ughf.learned": False}, "fixed equal scale weights, plain sum of losses")
register_variant("no_ttsa", {"model.ttsa.enabled": False}, "one plain forward pass at test time")
register_variant(
    "spatial_only",
    {"model.sdm.enabled": False, "model.amfd.freq_view": False},
    "no SDM, no frequency mask: the paper's spatial-masking-only baseline",
)
register_variant(
    "bank_only",
    {"model.amfd.enabled": False},
    "MASF's SAMB banks scored alone, everything else as in full (TTSA included): what the student adds",
    baseline=True,
)
register_variant(
    "patchcore",
    {"model.method": "patchcore"},
    "PatchCore (Roth et al. 2022): middle layers, 3x3 aggregation, one 10 % coreset bank, nearest neighbour",
    baseline=True,
)
register_variant(
    "padim",
    {"model.method": "padim"},
    "PaDiM (Defard et al. 2021): random channel subset, per-position Gaussian, Mahalanobis distance",
    baseline=True,
)
