"""The CLI answers --version, --help and argument errors without importing torch (heavy imports wait until a
command runs), and Python warnings reach the terminal as one log line each."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import warnings

from compound_fer import cli

PROBE = """
import json, sys
from compound_fer import cli
heavy = ("torch", "avalanche", "pytorch_grad_cam", "cv2", "matplotlib")
report = []
for argv in json.loads(sys.argv[1]):
    try:
        rc = cli.main(argv)
    except SystemExit as exc:
        rc = exc.code
    report.append([argv, rc, [m for m in heavy if m in sys.modules]])
print(json.dumps(report))
"""


def test_version_help_and_argument_errors_do_not_import_torch():
    commands = list(cli.build_parser()._subparsers._group_actions[0].choices)  # every command the CLI has
    assert {"run", "demo", "gradcam", "data-info"} <= set(commands)
    cases = [["--version"], ["--help"], [], ["nosuch-command"], ["run", "--config", "nosuch"],
             ["fewshot", "--config", "nosuch.yaml"], ["demo", "--seeds", "x"], ["run", "--orders"],
             ["data-info", "--limit", "many", "x"], ["gradcam"], ["evaluate", "--model", "m.pt"],
             *([c, "--help"] for c in commands), *([c, "--no-such-option"] for c in commands)]
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(cases)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert [(argv, loaded) for argv, _, loaded in report if loaded] == []
    codes = {tuple(argv): rc for argv, rc, _ in report}
    assert codes[("--version",)] == 0 and codes[("run", "--config", "nosuch")] == 2
    assert all(codes[(c, "--no-such-option")] == 2 for c in commands)


def test_importing_the_package_is_light():
    out = subprocess.run([sys.executable, "-c", "import sys, compound_fer, compound_fer.cli, compound_fer.explain; "
                          "print('torch' in sys.modules, 'numpy' in sys.modules)"],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_warnings_become_one_log_line_without_their_source_line(monkeypatch, caplog, capsys):
    def noisy(args):
        warnings.warn("split_by_subject: no draw kept every class\n  in every part", UserWarning)
        warnings.warn("an old API", DeprecationWarning)
        return 0

    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_run(parser(), noisy))
    before = warnings.showwarning
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        with caplog.at_level(logging.WARNING):
            assert cli.main(["report", "somewhere"]) == 0
    assert warnings.showwarning is before  # restored for whoever called main()
    lines = [r.getMessage() for r in caplog.records if r.name == "py.warnings"]
    assert lines == ["split_by_subject: no draw kept every class in every part",
                     "DeprecationWarning: an old API"]
    assert ".py:" not in capsys.readouterr().err


def _with_run(parser, run):
    sub = parser._subparsers._group_actions[0].choices["report"]
    sub.set_defaults(_run=run)
    return parser
