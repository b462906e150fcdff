"""Every ablation variant: what it switches off, nothing else.

Adding a variant is one ``register_variant`` line; the CLI (``--variant``,
``--ablations``), the orchestrator and the tests pick it up from here.
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
    "patchcore",
    {
        "model.amfd.enabled": False,
        "model.sdm.enabled": False,
        "model.samb.spectral_anchor": False,
        "model.samb.local_avg": 3,
        "model.ughf.learned": False,
        "model.ughf.cos_weight": 0.0,
        "model.ughf.bank_weight": 1.0,
        "model.ttsa.enabled": False,
    },
    "bank-only baseline: teacher features, 3x3 averaging, coreset, kNN; no student, no training",
    baseline=True,
)
