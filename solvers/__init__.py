"""Classical and learned solvers."""

from .result import SolveResult

__all__ = ["SolveResult"]
