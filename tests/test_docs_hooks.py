"""The MkDocs hooks in docs/hooks rewrite rendered HTML as their docstrings say."""

from __future__ import annotations

import importlib.util
from pathlib import Path

HOOKS = Path(__file__).resolve().parents[1] / "docs" / "hooks"


def _hook(name: str):
    spec = importlib.util.spec_from_file_location(name, HOOKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sphinx_roles_become_plain_code_and_tilde_keeps_the_last_name():
    html = ('is m; without it :func:<code>compound_fer.memory.memory_budget</code>, '
            '(:func:<code class="nowrap">~compound_fer.data.schemes.flip_points</code>) and :class:<code>X</code>; '
            'a <code>:func:</code> left alone')
    out = _hook("sphinx_roles").on_page_content(html)
    assert out == ('is m; without it <code>compound_fer.memory.memory_budget</code>, '
                   '(<code class="nowrap">flip_points</code>) and <code>X</code>; a <code>:func:</code> left alone')


def test_code_nowrap_marks_short_spanless_code_only():
    out = _hook("code_nowrap").on_page_content("<code>--threads</code> <code>a b</code>")
    assert out == '<code class="nowrap">--threads</code> <code>a b</code>'
