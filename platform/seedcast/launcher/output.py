"""The foreground launcher's terminal: every child's log lines with a coloured prefix.

Children log one line per event (``<time> <LEVEL> <role> <name> <message>``,
see :mod:`seedcast.logs`); the launcher shows ``<name> │ <hh:mm:ss> <LEVEL>
<message>`` with the name coloured by role and the level by severity. Lines
that are not log lines (a traceback) are shown dimmed as they are. Prometheus
is chatty: only its warnings and errors are shown (everything is in its log
file).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.text import Text
from seedcast.launcher.plan import ProcessSpec

ROLE_STYLES = {
    "launcher": "bold white",
    "origin": "magenta",
    "edge": "cyan",
    "dns": "yellow",
    "tracker": "green",
    "peer": "blue",
    "viewer": "bright_blue",
    "prometheus": "red",
}
LEVEL_STYLES = {
    "DEBUG": "dim",
    "INFO": "",
    "WARNING": "yellow",
    "ERROR": "bold red",
    "CRITICAL": "bold red",
}
_LINE = re.compile(
    r"^(\S+)T(\d\d:\d\d:\d\d)\S* (DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+\S+ \S+ (.*)$"
)
_PROMETHEUS_QUIET = re.compile(r"level=(info|debug)\b")


class ColourLines:
    """A line sink for the supervisor that prints to a rich console."""

    def __init__(self, console: Console, names: Iterable[str]) -> None:
        self.console = console
        self.width = max([len(name) for name in names] + [len("launcher")])

    def __call__(self, spec: ProcessSpec, line: str) -> None:
        self.show(spec.role, spec.name, line)

    def show(self, role: str, name: str, line: str) -> None:
        if role == "prometheus" and _PROMETHEUS_QUIET.search(line):
            return
        text = Text(name.ljust(self.width), style=ROLE_STYLES.get(role, "white"))
        text.append(" │ ", style="dim")
        match = _LINE.match(line)
        if match:
            _, clock, level, message = match.groups()
            text.append(clock + " ", style="dim")
            text.append(level.ljust(5) + " ", style=LEVEL_STYLES.get(level, ""))
            text.append(message)
        else:
            text.append(line, style="dim")
        self.console.print(text, soft_wrap=True, highlight=False)


class LauncherLogHandler(logging.Handler):
    """Routes the launcher's own ``seedcast.*`` log records through :class:`ColourLines`."""

    def __init__(self, sink: ColourLines) -> None:
        super().__init__()
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            self.sink.show("launcher", "launcher", line)
        except Exception:
            self.handleError(record)

    @classmethod
    def install(cls, sink: ColourLines) -> None:
        """Replace the stderr handler that ``setup_logging`` installed (keep the file)."""
        root = logging.getLogger("seedcast")
        formatter: Any = None
        for handler in list(root.handlers):
            if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler
            ):
                formatter = handler.formatter
                root.removeHandler(handler)
        replacement = cls(sink)
        replacement.setFormatter(formatter)
        root.addHandler(replacement)
