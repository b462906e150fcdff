"""Ablation variants of MASF and the ablation grids (see variants.py)."""
