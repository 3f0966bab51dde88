"""The command line's words: every argument and option the commands share (type, flag, help text, default), the
`--help` epilog of the commands that sign requests, and the `--version` and `-v/--verbose` callbacks."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from batchcert.cli.render import out
from batchcert.errors import ExitCode
from batchcert.settings import (
    DEFAULT_ENDPOINT,
    DEFAULT_LISTENER_WAIT_S,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MIN_VALIDITY_DAYS,
    DEFAULT_RATE_PER_S,
    DEFAULT_TIMEOUT_S,
    ENV_SECRET_ID,
    ENV_SECRET_KEY,
    ENV_TOKENS,
)


def print_version(value: bool) -> None:
    """`--version`: print it and exit."""
    if value:
        from batchcert import __version__

        out.print(f"batchcert {__version__}", highlight=False)
        raise typer.Exit(ExitCode.OK)


def log_decisions(verbose: bool) -> None:
    """`-v/--verbose`: log the scheduling decisions to stderr."""
    if verbose:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)


VERBOSE_HELP = "Log scheduling decisions as they happen: rate cuts, pacing, retry budget, clock."
#: -v/--verbose before the command (`batchcert -v run …`) or after it (`batchcert run … -v`): the same
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help=VERBOSE_HELP, callback=log_decisions, expose_value=False)
]


MappingArg = Annotated[
    Path,
    typer.Argument(
        help="The mapping: .csv/.tsv/.txt (UTF-8, UTF-16 or GB18030; ',' ';' or TAB) or .xlsx.",
        show_default=False,
        metavar="MAPPING",
    ),
]
RunDirArg = Annotated[
    Path, typer.Argument(help="A run directory made by `batchcert run`.", show_default=False, metavar="RUN_DIR")
]
#: --profile of the commands other than `run` (whose help also names the files)
ProfileOpt = Annotated[str | None, typer.Option(help="Credential profile.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
SheetOpt = Annotated[
    str | None, typer.Option("--sheet", help="The .xlsx sheet to read (default: the only visible one).")
]
EncodingOpt = Annotated[
    str | None, typer.Option("--encoding", help="The CSV's encoding, e.g. gbk or big5 (default: detected).")
]
HiddenRowsOpt = Annotated[
    bool, typer.Option("--include-hidden-rows", help="Also send rows hidden or filtered out in the workbook.")
]
NoPreflightOpt = Annotated[
    bool, typer.Option("--no-preflight", help="Skip reading each listener's live state before sending.")
]
NoVerifyOpt = Annotated[bool, typer.Option("--no-verify", help="Skip reading the live state again after the run.")]
NoProbeOpt = Annotated[
    bool, typer.Option("--no-probe", help="Skip probing what the edge serves for each changed domain (TLS by SNI).")
]
CanaryOpt = Annotated[
    int,
    typer.Option(
        "--canary",
        min=0,
        help="Send, read back and probe the first N changes (on N listeners) before any other; stop if one fails.",
    ),
]
MaxFailuresOpt = Annotated[
    str | None,
    typer.Option(
        "--max-failures",
        help="Stop sending once N changes (or P% of the rows) have failed: terminal, reverted or not served.",
    ),
]
ProbeWaitOpt = Annotated[
    float,
    typer.Option(
        "--probe-wait",
        min=0,
        help="Seconds to keep probing a changed domain while its edge still serves another certificate.",
    ),
]
ListenerWaitOpt = Annotated[
    float | None,
    typer.Option(
        "--listener-wait",
        help=f"Seconds a row waits out a busy listener or a changing domain (not counted as attempts) "
        f"[default: {DEFAULT_LISTENER_WAIT_S:g}].",
        show_default=False,
    ),
]
#: settings a rerun takes from what the run recorded when not given (batchcert.settings.resolve_settings)
EndpointOpt = Annotated[
    str | None,
    typer.Option(
        help=f"API endpoint; international site: https://gaap.intl.tencentcloudapi.com; http only for loopback "
        f"[default: {DEFAULT_ENDPOINT}; rerun: what the run recorded].",
        show_default=False,
    ),
]
RateOpt = Annotated[
    float | None,
    typer.Option(
        help=f"Ceiling in requests/s per action per credential [default: {DEFAULT_RATE_PER_S:g}; rerun: recorded].",
        show_default=False,
    ),
]
TimeoutOpt = Annotated[
    float | None,
    typer.Option(
        help=f"Per-request timeout in seconds [default: {DEFAULT_TIMEOUT_S:g}; rerun: recorded].", show_default=False
    ),
]
MaxAttemptsOpt = Annotated[
    int | None,
    typer.Option(help=f"Attempts per row [default: {DEFAULT_MAX_ATTEMPTS}; rerun: recorded].", show_default=False),
]
CaBundleOpt = Annotated[
    Path | None, typer.Option("--ca-bundle", help="PEM file of extra trusted CAs (a corporate TLS proxy).")
]
MinValidityOpt = Annotated[
    float | None,
    typer.Option(
        "--min-validity-days",
        help=f"A target certificate expiring within this many days is a warning "
        f"[default: {DEFAULT_MIN_VALIDITY_DAYS:g}; rerun: recorded].",
        show_default=False,
    ),
]
ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Send although another run on this machine is changing some of the same places (it is named).",
    ),
]
IgnoreColumnOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--ignore-column",
        metavar="NAME",
        help="Pass this column through although its cells look like certificate ids (its header as the file spells "
        "it, or its letter; repeatable).",
    ),
]


#: the end of `--help` of every command that signs requests (docs/gaap-api.md, "Credentials")
CREDENTIALS_EPILOG = (
    f"Credentials: {ENV_SECRET_ID} and {ENV_SECRET_KEY} (temporary keys: also {ENV_TOKENS[0]}), or --profile NAME "
    "from ~/.tencentcloud/credentials or ~/.tccli/NAME.credential; with TENCENTCLOUD_ROLE_ARN the role is assumed "
    "from them; without them, the instance role (TENCENTCLOUD_CAM_ROLE_NAME) or OIDC (the TKE_* variables), refreshed "
    "before they expire. The secret key is never a flag. A rehearsal (--emulator/--world) needs none."
)
