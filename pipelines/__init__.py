"""Pipelines shared by every method: reconstruction of MRI/CT files (``krylearn reconstruct``).

Each learned method keeps its own training pipeline in its room
(``solvers/<name>/recipe.py``).
"""
