"""The command line as a user runs it (subprocesses): exit codes, messages, rehearsal, the emulator command."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tencentcloud.common import credential
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.gaap.v20180529 import gaap_client, models

from tests.conftest import ThreadedEmulator, write_mapping
from tests.worlds import SECRET_ID, SECRET_KEY

ROOT = Path(__file__).resolve().parent.parent


def batchcert(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TENCENTCLOUD_")}
    return subprocess.run(
        [sys.executable, "-m", "batchcert", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        cwd=cwd or ROOT,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_validate_exit_codes_and_row_messages(tmp_path: Path) -> None:
    """validate exits 0 on a clean mapping and 2 listing every bad row by number; a missing column exits 2."""
    clean = write_mapping(tmp_path / "ok.csv", [("listener-aaaa0001", "www.example.com", "cert-00001")])
    assert batchcert("validate", str(clean)).returncode == 0
    bad = write_mapping(tmp_path / "bad.csv", [("listener-aaaa0001", "www.example.com", ""), ("x", "y", "cert-1")])
    result = batchcert("validate", str(bad))
    assert result.returncode == 2
    assert "row 2: CertificateId is empty — fill it or delete the row" in result.stdout
    assert "row 3: ListenerId 'x' is not a listener id" in result.stdout
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("Domain\nwww.example.com\n")
    result = batchcert("validate", str(nocol))
    assert (
        result.returncode == 2
        and "lacks the column(s) ListenerId" in result.stderr
        and "Traceback" not in result.stderr
    )


def test_rehearsal_says_nothing_changed_and_writes_the_run_directory(tmp_path: Path) -> None:
    """run --emulator seeds an emulator from the mapping, succeeds, says nothing changed, writes every report."""
    mapping = write_mapping(
        tmp_path / "m.csv", [("listener-aaaa0001", f"d{i}.example.com", "cert-00001") for i in range(5)]
    )
    result = batchcert("run", str(mapping), "--emulator", "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    assert "nothing changed on Tencent Cloud" in result.stdout
    for name in ("journal.sqlite3", "report.csv", "report.xlsx", "summary.md", "summary.json", "failed.csv"):
        assert (tmp_path / "run" / name).is_file(), name
    assert "nothing changed on Tencent Cloud" in (tmp_path / "run" / "summary.md").read_text()


def test_missing_credentials_exit_2_naming_variables(tmp_path: Path) -> None:
    """Without credentials a real run exits 2 and names the variables; nothing is sent."""
    mapping = write_mapping(tmp_path / "m.csv", [("listener-aaaa0001", "www.example.com", "cert-00001")])
    result = batchcert("run", str(mapping), "--endpoint", "http://127.0.0.1:9", env={"HOME": str(tmp_path)})
    assert result.returncode == 2
    assert "TENCENTCLOUD_SECRET_ID" in result.stderr and "TENCENTCLOUD_SECRET_KEY" in result.stderr


def test_plain_http_to_a_remote_host_is_refused(tmp_path: Path) -> None:
    """--endpoint http:// is allowed only for loopback hosts."""
    mapping = write_mapping(tmp_path / "m.csv", [("listener-aaaa0001", "www.example.com", "cert-00001")])
    env = {"HOME": str(tmp_path), "TENCENTCLOUD_SECRET_ID": SECRET_ID, "TENCENTCLOUD_SECRET_KEY": SECRET_KEY}
    result = batchcert("run", str(mapping), "--endpoint", "http://gaap.example.invalid", env=env)
    assert result.returncode == 2 and "only for loopback" in result.stderr


def test_run_against_endpoint_and_wrong_key_message(
    tmp_path: Path, threaded_emulator: Callable[..., ThreadedEmulator]
) -> None:
    """A run with a wrong key exits 1 and tells the operator to check the credentials; the key is never printed."""
    server = threaded_emulator()
    mapping = write_mapping(
        tmp_path / "m.csv", [("listener-aaaa0002", f"d{i}.example.com", "cert-wild0001") for i in range(10)]
    )
    env = {"HOME": str(tmp_path), "TENCENTCLOUD_SECRET_ID": SECRET_ID, "TENCENTCLOUD_SECRET_KEY": "wrong-key-XYZZY-123"}
    result = batchcert("run", str(mapping), "--endpoint", server.base_url, "--out", str(tmp_path / "run"), env=env)
    assert result.returncode == 1
    assert "check the credentials" in result.stderr
    assert "batchcert rerun" in result.stdout
    assert "wrong-key-XYZZY-123" not in result.stdout + result.stderr


def test_emulator_command_serves_a_world_to_the_official_sdk(tmp_path: Path) -> None:
    """`batchcert emulator --port P --world FILE` serves the world file; the SDK changes a certificate through it."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "batchcert",
            "emulator",
            "--port",
            "0",
            "--world",
            str(ROOT / "inputs" / "demo-world.json"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.search(r"listening on http://(127\.0\.0\.1:\d+)", first)
        assert match, first
        creds = re.search(r"TENCENTCLOUD_SECRET_ID=(\S+) TENCENTCLOUD_SECRET_KEY=(\S+)", proc.stdout.readline())
        assert creds
        client = gaap_client.GaapClient(
            credential.Credential(creds.group(1), creds.group(2)),
            "",
            ClientProfile(httpProfile=HttpProfile(protocol="http", endpoint=match.group(1))),
        )
        request = models.ModifyCertificateRequest()
        request.ListenerId, request.Domain, request.CertificateId = (
            "listener-demo0003",
            "blog.example.org",
            "cert-blog2026",
        )
        assert client.ModifyCertificate(request).RequestId
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)  # reaps the process and closes its pipes


def test_emulator_from_mapping_and_help_is_fast(tmp_path: Path) -> None:
    """--from-mapping needs no world file; `batchcert --help` lists the commands quickly (imports stay light)."""
    started = time.monotonic()
    result = batchcert("--help")
    assert result.returncode == 0 and "validate" in result.stdout and "emulator" in result.stdout
    assert time.monotonic() - started < 30  # sanity only; the 0.5 s goal is measured by `make bench`
    bad = batchcert("emulator")
    assert bad.returncode == 2 and "exactly one of" in bad.stderr


def test_terminal_prompt_shows_the_plan_and_no_sends_nothing(tmp_path: Path) -> None:
    """On a terminal without --yes, run shows rows, endpoint and masked SecretId, asks, and 'n' sends nothing (exit 2)."""
    import pty

    mapping = write_mapping(
        tmp_path / "m.csv", [("listener-aaaa0001", "www.example.com", "cert-00001"), ("bad", "x", "")]
    )
    primary, secondary = pty.openpty()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TENCENTCLOUD_")},
        "HOME": str(tmp_path),
        "TENCENTCLOUD_SECRET_ID": SECRET_ID,
        "TENCENTCLOUD_SECRET_KEY": SECRET_KEY,
    }
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "batchcert",
            "run",
            str(mapping),
            "--endpoint",
            "http://127.0.0.1:9",
            "--out",
            str(tmp_path / "run"),
        ],
        stdin=secondary,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    ) as proc:
        os.close(secondary)
        os.write(primary, b"n\n")
        _, err = proc.communicate(timeout=60)
    os.close(primary)
    assert proc.returncode == 2
    assert (
        "1 to send on 1 listener(s), 1 invalid" in err
        and "Duration:  at least" in err
        and "http://127.0.0.1:9" in err
        and "AKID" + "*" * 28 + "0001" in err
    )
    assert "nothing was sent" in err
    assert not (tmp_path / "run" / "journal.sqlite3").exists()


def test_emulator_world_from_mapping(tmp_path: Path) -> None:
    """--from-mapping serves a world in which the mapping's rows succeed (checked with a rehearsal-free run)."""
    mapping = write_mapping(
        tmp_path / "m.csv",
        [("listener-aaaa0001", "www.example.com", "cert-00001", "cert-ca001")],
        ("ListenerId", "Domain", "CertificateId", "ClientCertificateId"),
    )
    with subprocess.Popen(
        [sys.executable, "-m", "batchcert", "emulator", "--port", "0", "--from-mapping", str(mapping)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    ) as proc:
        try:
            assert proc.stdout is not None
            url = re.search(r"listening on (http://\S+)", proc.stdout.readline())
            creds = re.search(r"TENCENTCLOUD_SECRET_ID=(\S+) TENCENTCLOUD_SECRET_KEY=(\S+)", proc.stdout.readline())
            assert url and creds
            env = {
                "HOME": str(tmp_path),
                "TENCENTCLOUD_SECRET_ID": creds.group(1),
                "TENCENTCLOUD_SECRET_KEY": creds.group(2),
            }
            result = batchcert(
                "run", str(mapping), "--endpoint", url.group(1), "--out", str(tmp_path / "run"), "--yes", env=env
            )
            assert result.returncode == 0, result.stdout + result.stderr
        finally:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=10)


def test_version_and_short_help() -> None:
    from typer.testing import CliRunner as Runner

    from batchcert import __version__
    from batchcert.cli import app as cli_app

    assert Runner().invoke(cli_app, ["--version"]).output.strip() == f"batchcert {__version__}"
    short = Runner().invoke(cli_app, ["run", "-h"])
    assert short.exit_code == 0 and "--listener-wait" in short.output
    for command in ("run", "rerun", "plan"):
        shown = Runner().invoke(cli_app, [command, "-h"], terminal_width=200).output
        assert "TENCENTCLOUD_SECRET_ID" in shown and "TENCENTCLOUD_SECRET_KEY" in shown, command
        flag = next(line for line in shown.splitlines() if "--no-verify" in line or "--emulator" in line)
        assert "bool" not in flag.lower(), flag  # flags have no type column
        assert "[default: 20; rerun: recorded]" in " ".join(shown.split()) or (command == "plan" and "--rate" in shown)
