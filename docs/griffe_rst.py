"""Griffe extension: render the reStructuredText bits of our docstrings.

The package's docstrings follow numpydoc, which borrows a few reStructuredText
constructs that Markdown does not know. Before mkdocstrings parses a docstring,
this extension rewrites them:

* roles such as ``:func:`~bayesnmf.fit_map``` become inline code (the last
  dotted part when the target starts with ``~``);
* ``:math:`x``` becomes ``$x$`` and a ``.. math::`` block becomes a ``$$``
  block, both typeset by ``pymdownx.arithmatex``;
* ``.. note::`` and ``.. warning::`` become admonitions.

Loaded by ``mkdocs.yml`` (``extensions: [docs/griffe_rst.py]``); the package
itself does not depend on it.
"""

from __future__ import annotations

import re
import textwrap

import griffe

_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_ROLE = re.compile(r":(?:py:)?[a-z]+:`(~?)([^`<]+?)(?:\s*<([^>]+)>)?`")
_DIRECTIVE = re.compile(r"^(?P<indent>[ \t]*)\.\. (?P<name>math|note|warning)::[ \t]*"
                        r"(?P<arg>.*)$")


def _role(match: re.Match) -> str:
    tilde, text, target = match.groups()
    if target:  # :func:`title <target>`
        return f"`{text.strip()}`"
    name = text.strip()
    if tilde:
        name = name.rsplit(".", 1)[-1]
    return f"`{name}`"


def _block(lines: list[str], start: int) -> tuple[list[str], int]:
    """The indented body of a directive that starts at ``lines[start]``."""
    indent = len(lines[start]) - len(lines[start].lstrip())
    body, i = [], start + 1
    while i < len(lines):
        line = lines[i]
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        body.append(line)
        i += 1
    while body and not body[-1].strip():
        body.pop()
        i -= 1
    return body, i


def convert(text: str) -> str:
    """Rewrite the reStructuredText constructs of one docstring as Markdown."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _DIRECTIVE.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        indent, name, arg = match["indent"], match["name"], match["arg"].strip()
        body, i = _block(lines, i)
        content = textwrap.dedent("\n".join(body)).strip("\n").splitlines()
        if name == "math":
            math = [arg] if arg else []
            math += content
            out += [f"{indent}$$"] + [f"{indent}{m}" for m in math] + [f"{indent}$$"]
        else:
            out.append(f"{indent}!!! {name}")
            first = [arg] if arg else []
            out += [f"{indent}    {c}" if c.strip() else "" for c in first + content]
    text = "\n".join(out)
    text = _MATH_ROLE.sub(lambda m: f"${m.group(1)}$", text)
    return _ROLE.sub(_role, text)


class RSTToMarkdown(griffe.Extension):
    """Convert docstrings as griffe loads each object."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:  # noqa: D102
        if obj.docstring is not None:
            obj.docstring.value = convert(obj.docstring.value)
