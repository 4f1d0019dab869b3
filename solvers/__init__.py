"""Classical and learned solvers: ``Solver``, ``solve``, ``cg`` and the methods behind them."""

from .api import cg, gauss_seidel, jacobi, solve, sor, ssor
from .result import SolveResult
from .solver import Solver, available_methods, register_method

__all__ = ["Solver", "SolveResult", "solve", "cg", "sor", "ssor", "gauss_seidel", "jacobi", "available_methods",
           "register_method"]
