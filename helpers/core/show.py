"""How the notebooks show things: code and YAML, the guide's shell commands, JSON, log lines, secrets.

Every notebook and every step module shows what it did through these few functions, so a block
looks the same everywhere and long commands are wrapped so that they still paste and run.
"""
from __future__ import annotations

import json
from typing import Any, Optional
from unicodedata import east_asian_width

from helpers.core.i18n import _
from helpers.core.progress import _ipython


def display_code(text: str, language: str = "") -> None:
    """Show a block of code or YAML: highlighted in Jupyter, plain text in logs."""
    shell = _ipython()
    if shell is None:
        print(text)
        return
    from IPython.display import display

    display({"text/plain": text, "text/markdown": f"```{language}\n{text}\n```"}, raw=True)


def _shell_words(line: str) -> list[str]:
    """Split at spaces outside quotes, keeping the quotes (for re-wrapping, not for running)."""
    words, current, quote = [], "", ""
    for char in line:
        if char in "'\"" and (not quote or quote == char):
            quote = "" if quote else char
        if char == " " and not quote:
            if current:
                words.append(current)
            current = ""
        else:
            current += char
    return words + ([current] if current else [])


def _units(words: list[str]) -> list[str]:
    """Words that must stay on one line: an option with its value (`-d @file`), a trailing comment."""
    units: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("#"):  # a backslash would not continue a comment: keep it whole
            return units + [" ".join(words[i:])]
        if word.startswith("-") and i + 1 < len(words) and not words[i + 1].startswith(("-", "#")):
            units.append(f"{word} {words[i + 1]}")
            i += 2
        else:
            units.append(word)
            i += 1
    return units


def _wrap_command(command: str, width: int) -> list[str]:
    """A long command as `\\`-continued lines of at most about `width` characters, never splitting an
    option from its value or a trailing comment."""
    lines, current = [], ""
    for word in _units(_shell_words(command)):
        if current and len(current) + 1 + len(word) > width:
            lines.append(current + " \\")
            current = "    " + word
        else:
            current = f"{current} {word}" if current else word
    return lines + [current]


def _shell_block(command: str, width: int) -> list[str]:
    lines, continued = [], False
    for line in command.strip("\n").splitlines():
        stripped = line.strip()
        if continued or not stripped or stripped.startswith("#"):
            lines.append(f"  {line}" if continued else line)
        else:
            first, *rest = _wrap_command(stripped, width - 2)
            lines += [f"$ {first}", *rest]
        continued = stripped.endswith("\\")
    return lines


def show_shell(command: str, label: str, width: int = 96) -> None:
    """Print shell commands under a one-line `# label`, as they paste and run.

    Lines are shown as shell input (`$ ...`); comment lines (`# ...`) and continuation lines
    stay as written, and a command longer than `width` is continued over several lines.
    Commands name secrets through shell variables, never by value.
    """
    display_code("\n".join([f"# {label}", *_shell_block(command, width)]), "bash")


def show_guide(command: str, width: int = 96) -> None:
    """The guide's own commands for the step just done, exactly as the guide writes them."""
    show_shell(command, _("the guide's commands, as the guide writes them:"), width)


def show_adapted(command: str, why: str, width: int = 96) -> None:
    """The guide's commands for this step with something changed; `why` says what and why, in one line."""
    show_shell(command, _("the guide's commands, adapted ({why}):").format(why=why), width)


def show_not_in_guide(command: str, why: str = "", width: int = 96) -> None:
    """Commands for what the cell did that the guide has no step for (`why`: what they are for)."""
    label = _("not in the guide: {why}").format(why=why) if why else _("not in the guide:")
    show_shell(command, label, width)


def show_equivalent(command: str, width: int = 96) -> None:
    """Older notebooks' name for a shell equivalent of the step just done (new ones say which of
    `show_guide`, `show_adapted` or `show_not_in_guide` it is)."""
    show_shell(command, _("a shell equivalent:"), width)


def abridge(value: Any, limit: int = 6) -> Any:
    """`value` with every list longer than `limit` cut to its first items and one marker string that
    says how many were left out (so an abridged JSON never passes for the whole)."""
    if isinstance(value, dict):
        return {k: abridge(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        kept = [abridge(v, limit) for v in value[:limit]]
        return kept + [f"… {len(value) - limit} more, abridged here"] if len(value) > limit else kept
    return value


def _json_text(value: Any, indent: str = "") -> str:
    """Indented JSON whose lists of plain values stay on one line (a shape reads `[1, 3, 32, 32]`)."""
    inner = indent + "  "
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(k, ensure_ascii=False)}: {_json_text(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        return "[\n" + ",\n".join(inner + _json_text(v, inner) for v in value) + f"\n{indent}]"
    return json.dumps(value, ensure_ascii=False)


def show_json(value: Any, title: str = "", limit: int = 6) -> None:
    """Show a JSON document (a request, a response, models.json) as it is, long lists abridged with a marker."""
    text = _json_text(abridge(value, limit))
    display_code(f"// {title}\n{text}" if title else text, "json")


def show_lines(lines: list[str], title: str) -> None:
    """Show log lines exactly as `kubectl logs` prints them, under a one-line title."""
    display_code("\n".join([f"# {title}", *(lines or [_("(no lines yet)")])]), "text")


def hand_to_admin(what: str, text: str, command: str = "") -> None:
    """Show what only an admin may apply (YAML or commands), marked as not applied by this notebook."""
    lines = ["# " + _("for your cluster's admin: {what}. You may not apply it, and nothing of it was applied.").format(
                 what=what),
             text.rstrip(), *(["# " + _("then: {command}").format(command=command)] if command else [])]
    display_code("\n".join(lines), "yaml")


def text_width(text: str) -> int:
    """Columns `text` takes in a terminal or a notebook's fixed-width output (a Hangul syllable takes two)."""
    return sum(2 if east_asian_width(char) in "WF" else 1 for char in text)


def pad(text: str, width: int) -> str:
    """`text` followed by spaces up to `width` columns (`str.ljust` counts Hangul as one)."""
    return text + " " * max(0, width - text_width(text))


def mask(secret: Optional[str]) -> str:
    """A stand-in for a secret value that says only how long it is (never any of its characters)."""
    if not secret:
        return "<empty>"
    return f"{'*' * 8} ({len(secret)} character{'s' if len(secret) != 1 else ''}, hidden)"
