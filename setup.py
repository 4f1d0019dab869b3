"""The repository root is the ``krylearn`` package: ``operators/`` is ``krylearn.operators`` and so on.

Subpackages are discovered (every folder with an ``__init__.py`` except the
tests); only this file itself is kept out of the wheel.
"""

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py


class _BuildPy(build_py):
    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        return [m for m in modules if not (package == "krylearn" and m[1] == "setup")]


setup(
    package_dir={"krylearn": "."},
    packages=["krylearn"] + ["krylearn." + p for p in find_packages(".", exclude=["tests", "tests.*", "build", "build.*"])],
    cmdclass={"build_py": _BuildPy},
)
