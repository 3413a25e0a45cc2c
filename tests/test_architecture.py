"""The import contract (pyproject.toml [tool.importlinter]): layers point one way, and a cycle fails."""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

from cli_helpers import REPO

LINT = Path(sys.executable).parent / "lint-imports"


def _lint(src: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(src))  # this copy of the packages, ahead of the installed one
    return subprocess.run([str(LINT), "--no-cache", "--config", str(REPO / "pyproject.toml")], cwd=src, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_layers_are_kept():
    result = _lint(REPO / "src")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    for package in ("experiments", "hydra_plugins"):
        shutil.copytree(REPO / "src" / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    errors = tmp_path / "experiments" / "errors.py"
    errors.write_text(errors.read_text() + "\nfrom experiments import cli  # noqa: E402,F401\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "experiments.errors is not allowed to import experiments.cli" in result.stdout


def test_a_mode_importing_the_report_breaks_the_contract(tmp_path):
    for package in ("experiments", "hydra_plugins"):
        shutil.copytree(REPO / "src" / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    records = tmp_path / "experiments" / "sweep" / "records.py"
    records.write_text(records.read_text() + "\nfrom experiments.report import html  # noqa: E402,F401\n")
    result = _lint(tmp_path)
    assert result.returncode != 0 and "experiments.sweep is not allowed to import experiments.report" in result.stdout


def test_a_cycle_between_siblings_through_an_import_inside_a_function_breaks_the_contract(tmp_path):
    """Modules of one layer may import each other (``:``), but never both ways, not even inside a function."""
    for package in ("experiments", "hydra_plugins"):
        shutil.copytree(REPO / "src" / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    errors = tmp_path / "experiments" / "errors.py"  # experiments.locks imports experiments.errors
    errors.write_text(errors.read_text() + "\n\ndef _later():\n    from experiments import locks  # noqa: F401\n")
    result = _lint(tmp_path)
    assert result.returncode != 0 and "No cycles are allowed in experiments." in result.stdout, result.stdout[-2000:]


# -- imports at module level, classes at module level ------------------------------------------------------------
SRC = REPO / "src" / "experiments"
HEAVY = ("torch", "transformers", "datasets", "accelerate", "evaluate", "peft", "trl")

#: Modules that load none of HEAVY: what ``python run.py --help`` / ``--cfg job``, a sweep's parent process and the
#: report scripts (compare.py, dashboard.py) import, so they answer in a second.
LIGHT_MODULES = [
    "experiments",
    "experiments.cli",
    "experiments.callbacks",
    "experiments.rundir",
    "experiments.runs",
    "experiments.record",
    "experiments.errors",
    "experiments.files",
    "experiments.registry",
    "experiments.locks",
    "experiments.interrupts",
    "experiments.secrets",
    "experiments.hardware",
    "experiments.config",
    "experiments.config.schema",
    "experiments.config.validate",
    "experiments.sweep",
    "experiments.sweep.naming",
    "experiments.sweep.records",
    "experiments.sweep.space",
    "experiments.sweep.preflight",
    "experiments.sweep.search",
    "experiments.sweep.samplers",
    "experiments.sweep.summary",
    "experiments.report",
    "experiments.report.compare",
    "experiments.report.dashboard",
    "experiments.report.html",
    "experiments.report.paired",
    "experiments.report.runs_index",
    "experiments.report.study_plots",
    "experiments.report.tb_export",
    "experiments.metrics",
    "experiments.metrics.examples",
    "experiments.metrics.significance",
    "experiments.train",
    "experiments.train.checkpoints",
    "experiments.train.nodes",
    "experiments.train.launch",
    "experiments.tracking",
]

#: The only imports of the project's own modules made inside a function: a light module importing one that loads a
#: heavy library (the value), only when the function runs.
LAZY_IMPORTS = {
    ("experiments.cli", "experiments.infer"): "torch",
    ("experiments.metrics.examples", "experiments.metrics.squad.squad"): "datasets",
    ("experiments.tracking", "experiments.csv_tracker"): "accelerate",
    ("experiments.train", "experiments.train.hf_trainer"): "transformers",
    ("experiments.train", "experiments.train.loop"): "torch",
    ("experiments.train", "experiments.train.preference"): "transformers",
    ("experiments.train", "experiments.train.reinforcement"): "transformers",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _inside_functions(tree: ast.AST):
    """Every node inside a function body."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in node.body:
                yield from ast.walk(inner)


def test_own_modules_are_imported_at_module_level_except_the_lazy_list():
    found = set()
    for path in SRC.rglob("*.py"):
        for node in _inside_functions(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("experiments"):
                found.add((_module_name(path), node.module))
            elif isinstance(node, ast.Import):
                found.update((_module_name(path), a.name) for a in node.names if a.name.startswith("experiments"))
    assert found == set(LAZY_IMPORTS), (f"inside a function, not listed: {sorted(found - set(LAZY_IMPORTS))}; "
                                        f"listed, no longer there: {sorted(set(LAZY_IMPORTS) - found)}")


def test_no_class_is_defined_inside_a_function():
    nested = [f"{_module_name(path)}.{node.name}" for path in SRC.rglob("*.py")
              for node in _inside_functions(ast.parse(path.read_text())) if isinstance(node, ast.ClassDef)]
    assert nested == []


def _loaded(code: str) -> set:
    """The heavy libraries a fresh interpreter holds after ``code``."""
    probe = f"import sys\n{code}\nprint('loaded:', *(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return set(result.stdout.splitlines()[-1].split()[1:])


def test_light_modules_load_no_heavy_library_and_each_lazy_import_is_needed():
    """The lazy list is as short as it can be: each importer is light, and each target would load its library."""
    # all of them in one interpreter: none loads a heavy library if together they load none
    assert _loaded("\n".join(f"import {module}" for module in LIGHT_MODULES)) == set()
    for importer, _ in LAZY_IMPORTS:
        assert importer in LIGHT_MODULES, importer
    for target, library in {target: library for (_, target), library in LAZY_IMPORTS.items()}.items():
        assert library in _loaded(f"import {target}"), (target, library)


def test_help_and_cfg_job_load_no_heavy_library():
    for argv in (["--help"], ["--cfg", "job"]):
        code = f"import runpy; sys.argv = ['run.py', *{argv!r}]\ntry:\n    runpy.run_path('run.py', run_name='__main__')\nexcept SystemExit:\n    pass"
        assert _loaded(code) == set(), argv


# -- names that say what they hold -------------------------------------------------------------------------------
#: parameter name -> the annotation it carries everywhere in the project: ``cfg`` is the whole typed experiment,
#: never a part of it; a part is named for what it is; ``composed`` is Hydra's untyped composition, which only
#: the code before :func:`experiments.config.validate.to_typed` and the run's record (config.yaml, the resume
#: check) read; ``model_config`` is a checkpoint's transformers config
CONFIG_PARAMETERS = {"cfg": "ExperimentConfig", "composed": "DictConfig", "t": "TrainerConfig",
                     "task_cfg": "TaskConfig", "data_cfg": "DatasetConfig", "tok_cfg": "TokenizerConfig",
                     "model_cfg": "ModelConfig", "collator_cfg": "CollatorConfig", "peft_cfg": "PeftConfig",
                     "logger_cfg": "LoggerConfig", "model_config": "PreTrainedConfig"}
SOURCES = [SRC, SRC.parent / "hydra_plugins"]


def _is_config_name(name: str) -> bool:
    return name in ("cfg", "config") or name.endswith(("_cfg", "_config"))


def test_config_parameters_are_annotated_with_the_type_their_name_says():
    """Every parameter that holds a config says which one: the names above carry their type, and any other
    ``*cfg`` / ``*config`` parameter carries an annotation."""
    wrong = []
    for path in (p for root in SOURCES for p in root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for arg in node.args.posonlyargs + node.args.args + node.args.kwonlyargs:
                    expected = CONFIG_PARAMETERS.get(arg.arg)
                    found = ast.unparse(arg.annotation) if arg.annotation is not None else None
                    if (expected and found != expected) or (_is_config_name(arg.arg) and found is None):
                        wrong.append(f"{path.relative_to(SRC.parent)}:{node.lineno} {node.name}({arg.arg}: {found})")
    assert wrong == []
