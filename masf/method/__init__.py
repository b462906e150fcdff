"""MASF as MASF-SPEC.md pins it down: one module per component, assembled in model.py."""
