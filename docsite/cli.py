"""The command line's reference, read from the typer application itself: every command, its
help, its usage line, its arguments and options."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import typer
from typer._click.core import Command, Context, Parameter
from typer.core import TyperArgument as Argument
from typer.core import TyperOption as Option

from docsite.markdown import cell, code, table


@dataclass(frozen=True)
class DocumentedCommand:
    """One command (or group) of the application and the context naming it (its path)."""

    command: Command
    context: Context

    @property
    def path(self) -> str:
        """The command as typed: ``fanout dlq list``."""
        return self.context.command_path

    @property
    def subcommands(self) -> list[str]:
        """The names of its subcommands (none for a plain command)."""
        commands: dict[str, Command] = getattr(self.command, "commands", {})
        return sorted(commands)


def commands(app: typer.Typer, name: str = "fanout") -> list[DocumentedCommand]:
    """Every command of ``app``, the root first, then each group followed by its subcommands,
    in alphabetical order; hidden commands left out."""
    return list(_walk(typer.main.get_command(app), name, None))


def _walk(command: Command, name: str, parent: Context | None) -> Iterator[DocumentedCommand]:
    context = command.context_class(command, info_name=name, parent=parent)
    yield DocumentedCommand(command, context)
    subcommands: dict[str, Command] = getattr(command, "commands", {})
    for child in sorted(subcommands):
        if not subcommands[child].hidden:
            yield from _walk(subcommands[child], child, context)


def undocumented(app: typer.Typer) -> list[str]:
    """Each command without help text, and each of their parameters without help, by name
    (``fanout dlq list --sink``): what the reference could not explain."""
    missing: list[str] = []
    for documented in commands(app):
        if not (documented.command.help or "").strip():
            missing.append(documented.path)
        missing += [
            f"{documented.path} {_name(parameter)}"
            for parameter in _visible(documented.command)
            if not _help(parameter)
        ]
    return missing


def render(app: typer.Typer) -> str:
    """The reference of every command of ``app`` as Markdown: a section per command."""
    return "\n\n".join(_section(documented) for documented in commands(app)) + "\n"


def _section(documented: DocumentedCommand) -> str:
    command = documented.command
    depth = min(documented.path.count(" ") + 2, 4)
    parts = [
        f"{'#' * depth} `{documented.path}`",
        "```\n" + command.get_usage(documented.context).strip() + "\n```",
        (command.help or "").strip(),
    ]
    if documented.subcommands:
        names = ", ".join(f"`{documented.path} {name}`" for name in documented.subcommands)
        parts.append(f"Subcommands: {names}.")
    arguments = [p for p in _visible(command) if isinstance(p, Argument)]
    if arguments:
        rows = [[code(_name(p)), cell(_help(p))] for p in arguments]
        parts.append(table(["argument", "meaning"], rows))
    options = [p for p in _visible(command) if isinstance(p, Option)]
    if options:
        rows = [
            [
                cell(" / ".join(code(o) for o in p.opts + p.secondary_opts)),
                _default(p),
                cell(_help(p)),
            ]
            for p in options
        ]
        parts.append(table(["option", "default", "meaning"], rows))
    return "\n\n".join(part for part in parts if part)


def _visible(command: Command) -> list[Parameter]:
    return [p for p in command.params if not getattr(p, "hidden", False)]


def _name(parameter: Parameter) -> str:
    if isinstance(parameter, Option):
        return max(parameter.opts, key=len)
    return str(parameter.name).upper()


def _help(parameter: Parameter) -> str:
    return str(getattr(parameter, "help", None) or "").strip()


def _default(parameter: Parameter) -> str:
    default = parameter.default
    if isinstance(parameter, Option) and parameter.is_flag and default is False:
        return ""
    if default is None or type(default).__name__ in {"Sentinel", "_Unset", "UnsetType"}:
        return ""
    if isinstance(default, list | tuple) and not default:
        return ""
    return cell(code(str(default)))
