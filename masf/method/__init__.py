"""MASF as MASF-SPEC.md pins it down, one module per component, assembled in model.py; the baselines beside it.

- the frozen teacher (``teacher``), its feature cache (``feature_cache``) and the markers of teachers
  built before on this machine (``teacher_seen``);
- SDM (``sdm``), AMFD students (``amfd``), SAMB banks (``samb``, ``memory_bank``, ``coreset``), UGHF
  (``ughf``), TTSA (``ttsa``), shared FFT and scoring helpers (``fft``, ``scores``);
- ``model``: MASF assembled (its scoring regime and fusion in ``fusion``), and ``build_detector`` for every method; PatchCore (``patchcore``) and
  PaDiM (``padim``) on the same teacher.

May import: the base (``masf.config``, ``masf.errors``, ``masf.layout``); never ``masf.data``,
``masf.trial``, ``masf.runner``, ``masf.report`` or ``masf.cli``. A detector is a plain ``nn.Module``.
"""
