"""The command line: parse, build a request, call one core function in `batchcert.workflow`, print, map errors to
exit codes (`batchcert.errors`). typer and rich are used here only.

Modules:
- `commands`: the typer app and its commands — flags in, one workflow call, output, exit code; `main`, the entry
  point's last line of defence.
- `options`: the arguments and options the commands share (flag, help text, default), the credentials epilog,
  `--version` and `-v/--verbose`.
- `render`: what the commands print — messages, the preview and its prompt, a run's summary, the plan's table and
  count line, the inventory's findings.
- `progress`: how far a command is — a run's progress bar or plain lines, the inventory's reading steps.
"""

from batchcert.cli.commands import app, main
from batchcert.cli.render import plan_count_line

__all__ = ["app", "main", "plan_count_line"]
