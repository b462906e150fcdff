"""The paper's tables from finished trials: leaderboards, paired intervals, figures, costs, the paper's own figures.

- ``leaderboard``: trial rows -> the category, ablation and paired tables (terminal, markdown, csv, LaTeX);
- ``rows``: a sweep's trial runs -> one row per trial, planned-but-missing trials included;
- ``datasets``: rows of several datasets: each trial's dataset label, tables per dataset, stacked;
- ``intervals``: paired bootstrap over test images and t intervals over seeds;
- ``figures``: bars across variants, paired differences, PRO curves;
- ``efficiency``: parameters, training seconds, ms per image, peak memory per variant;
- ``paper``: the MASF paper's reported figures (its Tables 1, 3 and 4);
- ``store``: the rows and per-image records read back from MLflow (through ``masf.runner.tracking``)
  and the sweep's leaderboard files.

May import: the base (``masf.config``, ``masf.metrics``, ``masf.records``, ...) and, in ``store`` only,
``masf.runner.tracking``; never ``masf.trial``, ``masf.method`` or ``masf.cli``.
"""
