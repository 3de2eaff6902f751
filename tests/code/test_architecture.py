"""The architecture holds: stages are siblings over a shared base, paths are written once, and
bad config stops every command before any work."""

from __future__ import annotations

import ast
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.main import get_command
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.core.layout import LAYOUT

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "pipeline"
EDGES = {"pipeline.cli", "pipeline.__main__"}  # the wiring: may import every stage


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, root: Path) -> set[str]:
    """Every pipeline module imported anywhere in the file (top level or inside functions)."""
    module = _module_name(path, root)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("pipeline")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this package
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.startswith("pipeline"):
                found.add(target)
                found |= {f"{target}.{a.name}" for a in node.names}
    return found


def _stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["pipeline", "stages"] else None


def _all_modules(root: Path = ROOT) -> list[Path]:
    return sorted((root / "pipeline").rglob("*.py"))


def stage_offences(root: Path = ROOT) -> list[str]:
    """Imports that break the layering: a stage importing another stage (or the stages
    package), or a shared module importing any stage."""
    offences = []
    for path in _all_modules(root):
        module = _module_name(path, root)
        if module in EDGES:
            continue
        own = _stage_of(module)
        for target in _imports(path, root):
            other = _stage_of(target)
            if target == "pipeline.stages" or (other is not None and other != own):
                offences.append(f"{module} imports {target}")
    return sorted(set(offences))


def test_the_walk_sees_every_stage():
    stages = {_stage_of(_module_name(p, ROOT)) for p in _all_modules()} - {None}
    expected = {"simulate", "ingest", "features", "train", "evaluate", "backtest", "track"}
    assert expected | {"score", "report", "deliver"} <= stages


def test_no_stage_imports_another_stage():
    assert stage_offences() == []


def test_the_walk_catches_stage_to_stage_and_base_to_stage_imports(tmp_path):
    """The check above can fail: imports inside functions, relative imports and a shared
    module reaching up into a stage are all seen."""
    stages = tmp_path / "pipeline" / "stages"
    (stages / "report").mkdir(parents=True)
    (tmp_path / "pipeline" / "core").mkdir()
    (stages / "score.py").write_text("def f():\n    from pipeline.stages.train import run\n")
    (stages / "report" / "page.py").write_text("from ..deliver import channel\n")
    (stages / "report" / "words.py").write_text("from . import page\n")  # own package: fine
    (tmp_path / "pipeline" / "core" / "x.py").write_text("import pipeline.stages.score\n")
    assert stage_offences(tmp_path) == [
        "pipeline.core.x imports pipeline.stages.score",
        "pipeline.stages.report.page imports pipeline.stages.deliver",
        "pipeline.stages.report.page imports pipeline.stages.deliver.channel",
        "pipeline.stages.score imports pipeline.stages.train",
        "pipeline.stages.score imports pipeline.stages.train.run",
    ]


def test_the_shared_layers_never_import_the_cli():
    for path in _all_modules():
        module = _module_name(path, ROOT)
        if module in EDGES:
            continue
        assert not any(t.startswith("pipeline.cli") for t in _imports(path, ROOT)), module


# --- paths written once: dvc.yaml and the CLI defaults agree ------------------------------------


def _stage_commands() -> list[tuple[str, str, list[str]]]:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    out = []
    for name, stage in stages.items():
        words = shlex.split(stage["cmd"])
        assert words[:3] == ["python", "-m", "pipeline"], name
        out.append((name, words[3], words[4:]))
    return out


def _option_defaults(command: str) -> dict[str, object]:
    click = get_command(app).commands[command]
    defaults = {}
    for param in click.params:
        for opt in getattr(param, "opts", []):
            defaults[opt] = param.default
    return defaults


@pytest.mark.parametrize(("stage", "command", "args"), _stage_commands())
def test_dvc_yaml_passes_the_cli_defaults(stage, command, args):
    """Each path dvc.yaml passes is the CLI's default for that option (one layout, written
    once in pipeline.core.layout), so running a stage by hand reads and writes the same files."""
    as_of = yaml.safe_load((ROOT / "params.yaml").read_text())["base"]["as_of_date"]
    defaults = _option_defaults(command)
    pairs = dict(zip(args[::2], args[1::2], strict=True))
    assert pairs, stage
    for option, value in pairs.items():
        assert option in defaults, f"{stage}: {option} is not an option of `churn {command}`"
        value = value.replace("${base.as_of_date}", str(as_of))
        default = defaults[option]
        if option == "--as-of":  # not a path: its default (None) means base.as_of_date
            assert default is None and value == str(as_of), stage
            continue
        if default is None:  # resolved in the command: the paths it resolves to by default
            default = {
                "--truth": LAYOUT.truth_decisions,
                "--summary": LAYOUT.feature_summary,
            }.get(option, LAYOUT.lists_dir(as_of))
        assert Path(value) == Path(str(default)), f"{stage} {option}: {value} != {default}"


def test_dvc_yaml_outputs_are_layout_paths():
    as_of = yaml.safe_load((ROOT / "params.yaml").read_text())["base"]["as_of_date"]
    known = {str(v) for v in vars(LAYOUT).values()} | {str(LAYOUT.lists_dir(as_of))}
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                path = next(iter(entry)) if isinstance(entry, dict) else entry
                path = path.replace("${base.as_of_date}", str(as_of))
                assert path in known, f"{name}: {kind} {path} is not in pipeline.core.layout"


# --- typed config: a bad key stops every command before any work --------------------------------

COMMANDS = [
    ["check"],
    ["simulate"],
    ["ingest"],
    ["features"],
    ["train"],
    ["evaluate"],
    ["track"],
    ["backtest"],
    ["report"],
    ["score"],
    ["deliver", "--dry-run"],
    ["weekly", "--dry-run"],
    ["registry"],
    ["promote", "--version", "1"],
    ["mark", "marks.csv", "--csm", "csm_1"],
]


def test_every_command_is_covered():
    assert {c[0] for c in COMMANDS} | {"contract"} == set(get_command(app).commands)


def _bad_params(tmp_path: Path, edit) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    edit(params)
    path = tmp_path / "bad-params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda p: p["train"]["lightgbm"].__setitem__("learnign_rate", 0.1),
            "train.lightgbm.learnign_rate: unknown key; did you mean learning_rate?",
        ),
        (
            lambda p: p["train"].__setitem__("num_boost_round", "many"),
            "train.num_boost_round: Input should be a valid integer",
        ),
        (
            lambda p: p["score"]["risk_bands"].__setitem__("high", 1.5),
            "score.risk_bands.high: Input should be less than or equal to 1",
        ),
    ],
    ids=["unknown-key", "wrong-type", "out-of-range"],
)
def test_bad_config_stops_every_command_before_any_work(tmp_path, command, edit, expected):
    params = _bad_params(tmp_path, edit)
    work = tmp_path / "work"
    work.mkdir()
    cwd = os.getcwd()
    os.chdir(work)
    try:
        result = CliRunner().invoke(app, [*command, "--params", str(params)])
    finally:
        os.chdir(cwd)
    assert result.exit_code == 2, result.output
    assert expected in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert list(work.iterdir()) == []  # nothing was read or written: no work started


@pytest.mark.slow
def test_plain_pytest_collects_every_test_from_the_repo_root():
    """`pytest` (not only `python -m pytest`) works from a checkout: no collection errors."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "pytest"),
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "error" not in result.stdout.lower().split("collected")[-1]
    assert " tests collected" in result.stdout or "tests collected" in result.stdout
