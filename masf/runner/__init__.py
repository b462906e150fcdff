"""The sweep: plan the trials, run them on Ray Tune, log them to MLflow, watch for hung trials, show progress.

- ``plan``: which (category, variant, seed) trials, suites, the teachers checked before any trial;
- ``sweep``: ``run_sweep``, resume, the close (the leaderboard written through ``masf.report``);
- ``ray_tune``: every Ray and Ray Tune call; ``tracking``: every MLflow call;
- ``watchdog``: the per-attempt wall and no-progress limits; ``progress``: the live view and plain logs.

May import: the base, ``masf.data``, ``masf.trial`` (inside the Ray workers), ``masf.method`` (the
teacher check) and ``masf.report``; never ``masf.cli``. Ray is imported only in ``ray_tune`` and MLflow
only in ``tracking``, so an upgrade of either touches one file.
"""
