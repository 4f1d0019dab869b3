"""Problem generators: smoke simulation, Darcy flow, system sequences, brain/phantom images, measurement simulation.

They run solvers, so they sit above the solver core; the file formats they
write live in :mod:`krylearn.datasets`.
"""
