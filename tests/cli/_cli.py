"""The CLI as a function: exit code, stdout, stderr (argparse exits included)."""

from __future__ import annotations

from wideflat.cli import main


def run_cli(argv, capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse errors
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err
