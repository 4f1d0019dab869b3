"""The bandit's declaration: CLI subcommands only.

Bandit-tuned SOR has no solve method of its own (``sor``, ``ssor`` and
``pcg-ssor`` are classical methods of the solver core; the tuners pick their
``omega``), no network and no shipped weights.
"""

from ..registry import Method

METHOD = Method(
    name="bandit",
    summary="Learning to Relax: an online bandit picks SOR's omega across a sequence of related systems",
    weights=None,
    commands="commands:add_commands",
)
