"""Every command a newcomer copies works as printed: each command block of the README marked with a
``<!-- runnable -->`` line, and every command of ``distillbench --help`` (its epilog), so none can
rot.

Each block runs in an empty directory of its own (with ``configs/`` at hand, as in a checkout), its
commands in order, each checked as far as a test machine allows:

- every command is parsed by the command line's own parser (a renamed or misspelt option fails);
- ``synth-data`` runs as printed; ``random-weights`` gets the session's random weight files (what
  the command writes: ``save_random_weights``, seeded), which saves seconds;
- ``run`` and ``sweep``: the config the command gives is built and checked (keys, values, names; a
  sweep's grid points too) and its data read and split, so that a ``data.val_size`` too large for
  the recipe's data fails here. A command whose data the block does not make (CIFAR-10 downloaded,
  or ``~/data/...``) reads the generated test data instead, with a validation split it can hold;
- ``run`` on data the block made (an offline recipe) then trains, at tiny size (the small CNN
  alone, one epoch, one seed, 300 images: extra ``--set`` items appended), and the backbone weight
  files it names must exist;
- ``report`` runs when the block made its directory; ``--help`` prints.
Commands that need what a test machine has not (``--plugin`` of a module of the reader's, a Ray
cluster) are parsed only.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from distillbench import cli
from distillbench.data import load_study_data
from distillbench.study.sweep import grid_points
from tests.conftest import VAL_SIZE

REPO = Path(__file__).resolve().parents[1]
MARKER = "<!-- runnable -->"
PARSE_ONLY = ("--plugin", "--executor ray")
# Appended to an offline recipe's run once its config and data passed as printed.
TINY = (
    "--seeds 1 --set models=[small_cnn] --set train.epochs=1 --set data.train_limit=300 --set data.val_size=100 "
    "--set data.test_limit=100 --set evaluation.efficiency=false --set evaluation.figures=false --set perf.workers=1"
).split()


def shell_commands(lines: list[str]) -> list[list[str]]:
    """The ``distillbench`` commands of shell lines: continuation lines joined, comments dropped,
    each command's arguments up to a shell operator (``&&``)."""
    commands = []
    for line in re.sub(r"\\\n", " ", "\n".join(lines)).splitlines():
        words = shlex.split(line, comments=True)
        for start, word in enumerate(words):
            if word == "distillbench" or word.endswith("/distillbench"):
                rest = words[start + 1 :]
                ends = [index for index, token in enumerate(rest) if token in ("&&", "||", ";", "|")]
                commands.append(rest[: ends[0]] if ends else rest)
                break
    return commands


def readme_blocks() -> list[tuple[str, list[list[str]]]]:
    """(where, commands) of each README block marked runnable."""
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    blocks = []
    for number, line in enumerate(lines):
        if line.strip() == MARKER:
            assert lines[number + 1].startswith("```"), f"README.md:{number + 1}: {MARKER} must precede a ``` block"
            end = next(i for i in range(number + 2, len(lines)) if lines[i].startswith("```"))
            blocks.append((f"README.md:{number + 2}", shell_commands(lines[number + 2 : end])))
    return blocks


def epilog_blocks() -> list[tuple[str, list[list[str]]]]:
    """(where, commands) of each section of ``distillbench --help``'s examples; a line's description
    (after a run of spaces) is not part of its command."""
    blocks = []
    for section in cli.EPILOG.split("\n\n"):
        title, *lines = section.splitlines()
        commands = [re.split(r"\s{3,}", line.strip())[0] for line in lines]
        blocks.append((f"--help: {title}", shell_commands(commands)))
    return blocks


BLOCKS = readme_blocks() + epilog_blocks()


def test_the_readme_and_the_help_have_runnable_blocks():
    assert len(readme_blocks()) >= 3 and len(epilog_blocks()) == 2
    assert all(commands for _, commands in BLOCKS)
    offline = next(commands for where, commands in epilog_blocks() if where.startswith("--help: offline"))
    assert [command[0] for command in offline] == ["synth-data", "random-weights", "run"]
    assert "--out" in offline[-1] and offline[-1][-1] == "results/smoke"  # the continuation lines joined


@pytest.mark.parametrize(("where", "commands"), BLOCKS, ids=[where for where, _ in BLOCKS])
def test_block_runs_as_printed(where, commands, tmp_path, monkeypatch, cifar_dir, weight_files, cache_dir, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(REPO / "configs")
    made: set[Path] = set()  # what the block's own commands wrote
    for argv in commands:
        _check(argv, made, cifar_dir, weight_files, cache_dir, capsys)


def _check(argv: list[str], made: set[Path], cifar_dir, weight_files, cache_dir, capsys) -> None:
    said = shlex.join(["distillbench", *argv])
    if "--help" in argv or "--version" in argv:
        with pytest.raises(SystemExit) as exit_info:
            cli.main(argv)
        assert exit_info.value.code == 0, said
        return
    try:
        args = cli._parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{said}: the command line does not parse ({capsys.readouterr().err.strip()})")
    if args.command == "synth-data":
        assert cli.main(argv) == 0, said
        made.add(args.directory.resolve())
    elif args.command == "random-weights":
        args.directory.mkdir(parents=True)
        for path in weight_files.values():
            (args.directory / path.name).symlink_to(path)
        made.add(args.directory.resolve())
    elif args.command == "report":
        if args.out.resolve() in made:
            assert cli.main(argv) == 0, said
    elif not any(option in " ".join(argv) for option in PARSE_ONLY):
        _check_study(argv, args, made, cifar_dir, cache_dir, said, capsys)


def _check_study(argv: list[str], args, made: set[Path], cifar_dir, cache_dir, said: str, capsys) -> None:
    """A ``run`` or ``sweep`` command's config and data; an offline ``run`` trains, at tiny size."""
    offline = args.data_dir is not None and args.data_dir.resolve() in made
    extra = [] if offline else ["--data-dir", str(cifar_dir), "--set", f"data.val_size={VAL_SIZE}"]
    extra += ["--set", f"perf.cache_dir={cache_dir}"]
    try:
        given = cli._parser().parse_args([*argv, *extra])
        cfg = cli._sweep_config(given) if args.command == "sweep" else cli._study_config(given)
        load_study_data(cfg.data)
        if args.command == "sweep":
            grid_points(cfg)
    except cli.UserError as exc:
        pytest.fail(f"{said}: {exc}")
    if offline and args.command == "run":
        for path in cfg.weights.values():  # what the recipe names, made by the block
            assert path in ("imagenet", "none") or Path(path).is_file(), f"{said}: no {path}"
        assert cli.main([*argv, *extra, *TINY]) == 0, f"{said}: {capsys.readouterr().err}"
        out = args.out if args.out is not None else Path("results") / cfg.name
        assert (out / "report.md").is_file(), said
        made.add(out.resolve())
