"""The command tree: discovered method commands, stated defaults, --debug anywhere, flag names in errors, early output checks."""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp
import torch

import krylearn
from krylearn.cli.errors import FLAG_PHRASES, error_line, translate
from krylearn.cli.main import build_parser, main
from krylearn.cli.parser import options_of, subparsers_of
from krylearn.solvers.registry import methods

ROOT = Path(krylearn.__file__).resolve().parent


def _commands(parser, path=()):
    """``(path, parser)`` for every command of the tree (the root and every subcommand)."""
    yield path, parser
    for name, sub in subparsers_of(parser).items():
        yield from _commands(sub, (*path, name))


def _flags(*command) -> dict:
    return build_parser().parse_args([*command]).cli_flags


# ------------------------------------------------------------------ discovery
def test_every_declared_method_adds_its_commands():
    tree = dict(_commands(build_parser()))
    for m in methods().values():
        if not m.commands:
            continue
        verbs = {v: argparse.ArgumentParser().add_subparsers() for v in ("train", "eval", "bench", "data")}
        m.resolve(m.commands)(verbs)
        added = [(v, name) for v, sub in verbs.items() for name in sub.choices]
        assert added, f"{m.name} declares commands but adds none"
        for path in added:
            assert path in tree, f"{m.name}: {' '.join(path)} is not reachable from krylearn"
    for path in [("train", "dcdm"), ("bench", "dcdm"), ("train", "lsm"), ("eval", "lsm"), ("bench", "darcy"),
                 ("data", "darcy"), ("bench", "relax"), ("data", "sequence"), ("demo",), ("solve",),
                 ("bench", "poisson"), ("bench", "baselines"), ("data", "poisson")]:
        assert path in tree, path


def test_every_option_of_every_command_states_its_default():
    missing = []
    for path, parser in _commands(build_parser()):
        for a in options_of(parser):
            if a.dest == "help" or a.help == argparse.SUPPRESS:
                continue
            text = (a.help or "").lower()
            if not text or (a.nargs != 0 and not a.required and "default" not in text):
                missing.append(f"krylearn {' '.join(path)} {a.option_strings[-1]}: {a.help!r}")
    assert not missing, "\n".join(missing)


def test_bench_darcy_help_names_its_defaults_and_how_to_get_the_baselines(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "darcy", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "samples evaluated (default 200)" in text and "(default lsm-darcy)" in text
    assert "krylearn train lsm --kind fno" in text


def test_an_unshipped_model_says_how_to_train_it(tmp_path, capsys):
    data = tmp_path / "d.h5"
    data.write_bytes(b"")
    assert main(["bench", "darcy", "--data", str(data), "--models", "lsm-darcy,fno-darcy",
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "'fno-darcy' is neither a shipped model (lsm-darcy)" in err and "krylearn train lsm --kind fno" in err


# ------------------------------------------------------------------ --debug
@pytest.mark.parametrize("argv", [["--debug", "solve", "{missing}"], ["solve", "{missing}", "--debug"],
                                  ["solve", "--debug", "{missing}"]])
def test_debug_works_before_or_after_the_command(argv, tmp_path):
    argv = [a.format(missing=tmp_path / "no.mtx") for a in argv]
    with pytest.raises(FileNotFoundError):
        main(argv)
    assert main([a for a in argv if a != "--debug"]) == 2


# ------------------------------------------------------------------ errors name flags
#: The package's source folders (a virtual environment inside the clone must not be scanned).
PACKAGES = ("utils", "operators", "datasets", "solvers", "problems", "pipelines", "benchmarks")


def test_library_keywords_with_a_flag_are_all_translated():
    """Every "pass NAME=" in the library's messages has a rule that names the CLI's flag instead."""
    keywords = set()
    for path in (p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")):  # the package's own sources
        if "cli" in path.relative_to(ROOT).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                keywords |= set(re.findall(r"\bpass (\w+)=", node.value))
    assert keywords  # the check looks at something
    covered = " ".join(pattern for pattern, *_ in FLAG_PHRASES)
    assert not [k for k in keywords if f"pass {k}=" not in covered]


def test_solve_names_its_symmetry_flag(tmp_path, capsys):
    scipy.io.mmwrite(tmp_path / "N.mtx", sp.csr_matrix(np.array([[4.0, 1.0], [0.0, 4.0]])))
    assert main(["solve", str(tmp_path / "N.mtx"), "--method", "cg"]) == 2
    err = capsys.readouterr().err
    assert "not symmetric" in err and "give --no-check-symmetry" in err and "check_symmetry=False" not in err
    assert main(["solve", str(tmp_path / "N.mtx"), "--method", "cg", "--no-check-symmetry"]) in (0, 1)
    assert "not symmetric" not in capsys.readouterr().err


def test_dcdm_grid_message_names_the_flag_or_drops_the_keyword():
    A = sp.csr_matrix(sp.eye(16) * 4.0)
    with pytest.raises(ValueError) as e:
        krylearn.solve(A, np.ones(16), method="dcdm")
    assert "grid_shape=(ny, nx)" in str(e.value)  # the Python message, right for Python users
    assert "give --grid-shape NY,NX or NZ,NY,NX" in translate(str(e.value), _flags("solve", "A.mtx"))
    assert "grid_shape=" not in translate(str(e.value), _flags("bench", "relax"))


def test_resume_message_names_no_resume(tmp_path):
    from krylearn.solvers.learned import load_checkpoint, save_checkpoint

    net = torch.nn.Linear(2, 2)
    save_checkpoint(tmp_path / "c.pt", model=net, fingerprint={"data": "a"})
    with pytest.raises(ValueError) as e:
        load_checkpoint(tmp_path / "c.pt", model=net, fingerprint={"data": "b"})
    line = error_line(e.value, _flags("train", "dcdm"))
    assert line.startswith("krylearn: error: checkpoint") and "start over with --no-resume" in line


@pytest.fixture(scope="module")
def lsm_on_8x8(tmp_path_factory):
    """A tiny LSM trained (untrained weights, normalisers fitted) on 8 x 8 grids, and a 12-sample 9 x 9 Darcy file."""
    from krylearn.datasets.pde_formats import write_darcy
    from krylearn.solvers.learned import save_pretrained
    from krylearn.solvers.lsm import LSM2d, NormalizedOperator, UnitGaussianNormalizer

    tmp = tmp_path_factory.mktemp("lsm")
    torch.manual_seed(0)
    x = torch.rand(4, 1, 8, 8)
    net = NormalizedOperator(LSM2d(width=8, num_basis=2, num_token=2, levels=2), UnitGaussianNormalizer.fit(x),
                             UnitGaussianNormalizer.fit(x))
    save_pretrained(net, {"data": "none (test)"}, tmp / "m")
    rng = np.random.default_rng(0)
    write_darcy(tmp / "d9.h5", rng.uniform(3, 12, (12, 9, 9)), rng.standard_normal((12, 9, 9)))
    return tmp / "m", tmp / "d9.h5"


def test_eval_lsm_on_another_grid_names_the_resample_flag(lsm_on_8x8, capsys):
    model, data = lsm_on_8x8
    assert main(["eval", "lsm", str(model), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert "give --resample yes" in err and "--resample native" in err and "resample=" not in err
    assert main(["eval", "lsm", str(model), "--data", str(data), "--resample", "native"]) == 0


def test_train_lsm_names_its_file_flags(lsm_on_8x8, tmp_path, capsys):
    _, data = lsm_on_8x8
    assert main(["train", "lsm", "--data", str(data), "--ntrain", "20", "--out", str(tmp_path / "m"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "exceeds the 12 samples of --data" in err and "data_train" not in err


def test_argument_names_at_the_start_of_a_message_become_flags():
    flags = _flags("bench", "darcy", "--data", "d.h5")
    assert translate("warm_count must be >= 1, got 0", flags) == "--warm-count must be >= 1, got 0"
    assert translate("model must be a name", flags) == "model must be a name"  # no such option: unchanged


def test_missing_nilearn_is_a_plain_error_naming_the_package(monkeypatch):
    from krylearn.problems.brain import mni152_path

    monkeypatch.setitem(sys.modules, "nilearn", None)  # import nilearn -> ImportError
    with pytest.raises(ImportError) as e:
        mni152_path()
    line = error_line(e.value)
    assert line.startswith("krylearn: error: ") and "pip install nilearn" in line and "krylearn[data]" not in line


def test_a_command_that_needs_nilearn_says_so_in_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "nilearn", None)
    assert main(["data", "mri", str(tmp_path / "m.h5"), "--size", "16", "--slices", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("krylearn: error: ") and err[0].endswith("pip install nilearn")


# ------------------------------------------------------------------ outputs checked before any work
def _fail(*_, **__):
    raise AssertionError("work started before the output was checked")


@pytest.mark.parametrize("argv, heavy", [
    (["demo", "--out", "{bad}"], "krylearn.cli.problem.smoke_problem"),
    (["bench", "poisson", "--out", "{bad}"], "krylearn.cli.problem.smoke_problem"),
    (["bench", "poisson", "--sequence", "3", "--out", "{bad}"], "krylearn.cli.bench.record_frames"),
    (["bench", "baselines", "--out", "{bad}"], "krylearn.cli.problem.smoke_problem"),
    (["bench", "dcdm", "--out", "{bad}"], "krylearn.solvers.dcdm.commands.run_dcdm_benchmark"),
    (["bench", "relax", "--out", "{bad}"], "krylearn.solvers.bandit.commands.make_sequence"),
    (["bench", "darcy", "--data", "d.h5", "--out", "{bad}"], "krylearn.solvers.lsm.commands.run_darcy_benchmark"),
    (["data", "poisson", "-o", "{bad}/s.h5"], "krylearn.cli.data.generate_poisson_systems"),
    (["data", "sequence", "--kind", "heat2d", "-o", "{bad}/s.h5"], "krylearn.solvers.bandit.commands.heat2d"),
    (["data", "darcy", "-o", "{bad}/d.h5"], "krylearn.solvers.lsm.commands.generate_darcy"),
    (["solve", "{mtx}", "-o", "{bad}/x.npy"], "krylearn.cli.solve.solve"),
])
def test_an_unwritable_output_fails_before_any_work(argv, heavy, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    scipy.io.mmwrite(tmp_path / "A.mtx", sp.csr_matrix(sp.eye(4) * 2.0))
    module, _, name = heavy.rpartition(".")
    monkeypatch.setattr(sys.modules[module], name, _fail)
    argv = [a.format(bad=blocker / "sub", mtx=tmp_path / "A.mtx") for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "cannot write to the folder" in err and "work started" not in err
    assert ("--out" if "--out" in argv else "--output") in err


# ------------------------------------------------------------------ the demo plot
def test_the_residual_plot_gives_every_method_its_own_style(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from krylearn.benchmarks.poisson import plot_residuals

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    names = [f"m{k}" for k in range(23)]
    plot_residuals({n: np.geomspace(1, 1e-6, 5 + k) for k, n in enumerate(names)}, tmp_path / "r.png", title="t")
    lines = [ln for ln in figures[0].axes[0].get_lines() if ln.get_label() in names]
    assert len(lines) == len(names)
    assert len({(ln.get_color(), ln.get_linestyle()) for ln in lines}) == len(names)
    monkeypatch.undo()
    plt.close(figures[0])
