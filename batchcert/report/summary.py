"""The change record: summary.json's content (`summarize`, from the journal and the tallies of the streaming pass)
and summary.md rendered from it (`render_markdown`), the page a change manager signs off.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from batchcert import classify
from batchcert.journal import Journal, iso_utc
from batchcert.model import CHANGE_REVERTED, PRECONDITION_MISMATCH, Outcome, Served, SessionAccount, SessionStatus
from batchcert.report.commands import failed_run_command, next_steps, rollback_run_command
from batchcert.report.files import REPORT_FILES
from batchcert.report.tables import DONE_VALUES
from batchcert.report.tally import LISTED_ROWS, LISTED_TICKETS, RollbackTally, Tally


def summarize(
    journal: Journal,
    facts: dict[str, str],
    tally: Tally,
    rollback: RollbackTally,
    targets: dict[str, Path],
    kept: Sequence[tuple[Path, Path]],
    notes: Sequence[str],
) -> dict[str, Any]:
    """summary.json's content: `facts` (the journal's, as read before the rows), the tallies of the rows, the
    journal's sessions and request counts (read now), where each report file went (`targets`), the user's files
    kept (`kept`: user file, new file) and `notes` (what the journal inspection found)."""
    by_action, answers = journal.request_counts()
    sessions = journal.sessions()
    transient = journal.transient_error_counts()
    run_dir = journal.run_dir
    started = sessions[0]["started_at"] if sessions else None
    finished = sessions[-1]["finished_at"] if sessions else None
    counts = {o.value: tally.counts[o.value] for o in Outcome}
    failed_name = targets["failed.csv"].name
    restored = facts.get("intents_restored", "")
    return {
        "mapping": facts.get("mapping", ""),
        "mapping_sha256": facts.get("mapping_sha256", ""),
        "mapping_changed": facts.get("mapping_changed", ""),
        "endpoint": facts.get("endpoint", ""),
        "secret_id": facts.get("secret_id_masked", ""),
        "rehearsal": facts.get("rehearsal", "") == "true",
        "started_at": iso_utc(started),
        "finished_at": iso_utc(finished),
        "duration_s": round(finished - started, 3) if started and finished else None,
        "rows": tally.rows,
        "counts": counts,
        "error_codes": dict(tally.codes.most_common()),
        #: failed requests of rows that ended done (retried past), by code: not in error_codes
        "transient_errors": transient,
        #: target certificates expiring within --min-validity-days, or why they could not be checked
        "certificate_warnings": [
            *json.loads(facts.get("certificate_warnings") or "[]"),
            *([f"certificate pre-flight {facts['certificate_check']}"] if facts.get("certificate_check") else []),
            *([f"certificate name check {facts['name_check']}"] if facts.get("name_check") else []),
            *([f"certificate chain: {facts['chain_check']}"] if facts.get("chain_check") else []),
        ],
        # an unknown code is terminal (never retried blindly); naming it lets the table grow by one line
        "codes_not_in_table": sorted(c for c in tally.codes if not classify.in_table(c)),
        "requests": by_action,
        "answers": answers,
        #: every session with who ran it and with which SecretId (an earlier journal: the run's)
        "sessions": [
            {
                "kind": s["kind"],
                "started_at": iso_utc(s["started_at"]),
                "finished_at": iso_utc(s["finished_at"]),
                "status": s["status"],
                "note": s["note"],
                "operator": s.get("operator") or facts.get("operator", ""),
                "secret_id": s.get("secret_id_masked") or facts.get("secret_id_masked", ""),
                #: which credential provider signed ("" in journals before 0.5.0)
                "credentials": s.get("credential_source", ""),
            }
            for s in sessions
        ],
        "all_done": all(n == 0 for o, n in counts.items() if o not in DONE_VALUES),
        "next_steps": next_steps(run_dir, counts, facts, targets["failed.csv"]),
        "failed_command": failed_run_command(run_dir, facts, targets["failed.csv"]),
        "interrupted": bool(sessions) and sessions[-1]["status"] in (SessionStatus.INTERRUPTED, SessionStatus.DIED),
        "operator": facts.get("operator", ""),
        "batchcert_version": facts.get("batchcert_version", ""),
        "sheet": facts.get("sheet", ""),
        "encoding": facts.get("encoding", ""),
        "settings": sessions[-1]["settings"] if sessions else {},
        "journal_lost_records": tally.confirmed_by_read_back,
        "served": {
            "probed": sum(n for value, n in tally.served.items() if value),
            "true": tally.served[Served.TRUE],
            "false": tally.served[Served.FALSE],
            "unreachable": tally.served[Served.UNREACHABLE],
            "not_served": tally.not_served,
            "not_served_total": tally.not_served_total,
        },
        "verification": {
            "checked": tally.checked,
            "verified": tally.verified,
            "not_checked": tally.not_checked,
            "pending": tally.pending,
            "succeeded_but_live_state_differs": tally.differs,
        },
        #: the report files as written (a name → where it went) and the user's files kept instead of replaced
        "files": {name: targets[name].name for name in REPORT_FILES},
        "kept_files": [{"kept": user.name, "written": new.name} for user, new in dict.fromkeys(kept)],
        #: server certificate and client CA list moves over the rows this run changed
        "certificate_moves": tally.move_table(),
        "not_done": {
            "total": tally.not_done_total,
            "rows": tally.not_done,
            "more": tally.not_done_total - len(tally.not_done),
            "file": failed_name,
        },
        "reverted": tally.reverted,
        "precondition_mismatch": tally.mismatched,
        "change_tickets": [
            {"column": column, "values": list(values)[:LISTED_TICKETS], "more": max(len(values) - LISTED_TICKETS, 0)}
            for column, values in tally.tickets.items()
        ],
        "rollback": {
            "file": targets["rollback.csv"].name,
            "rows": rollback.lines,
            "command": rollback_run_command(run_dir, facts, targets["rollback.csv"]),
            "targets_checked": rollback.certificates is not None,
            "refused": rollback.refused,
            "refused_total": rollback.refused_total,
            "notes": rollback.noted,
            "notes_total": rollback.noted_total,
            "doubtful": rollback.doubtful,
            "doubtful_total": rollback.doubtful_total,
        },
        "journal_warnings": [*notes, *([f"the journal lost records: {restored}"] if restored else [])],
    } | (_accounts(tally, sessions) if facts.get("profiles") == "true" else {})


def _account_lines(accounts: list[dict[str, Any]]) -> list[str]:
    """summary.md's table of accounts: each one's rows by outcome and who signed for it."""
    outcomes = [o.value for o in Outcome]
    lines = [
        "",
        "## Accounts",
        "",
        "| profile | rows | " + " | ".join(outcomes) + " | all done | SecretId | credentials |",
        "|---|---:|" + "---:|" * len(outcomes) + "---|---|---|",
    ]
    for a in accounts:
        counts = " | ".join(str(a["counts"][o]) for o in outcomes)
        lines.append(
            f"| {_cell(a['profile'] or '(default)')} | {a['rows']} | {counts} | {'yes' if a['all_done'] else 'NO'} | "
            f"`{a['secret_id']}` | {_cell(a['credentials'])} |"
        )
    return lines


def _accounts(tally: Tally, sessions: list[dict[str, Any]]) -> dict[str, Any]:
    """The section per account of a run whose rows name their accounts (README, "Many accounts in one run"): its
    rows by outcome, and the SecretId and credential provider that signed for it in the last session that did."""
    signed: dict[str, SessionAccount] = {}
    for session in sessions:
        signed |= {account.profile: account for account in session["accounts"]}
    section = []
    for profile, by_outcome in tally.account_table().items():
        counts = {o.value: by_outcome.get(o.value, 0) for o in Outcome}
        account = signed.get(profile)
        section.append(
            {
                "profile": profile,
                "rows": sum(counts.values()),
                "counts": counts,
                "all_done": all(n == 0 for o, n in counts.items() if o not in DONE_VALUES),
                "secret_id": account.secret_id_masked if account else "",
                "credentials": account.credential_source if account else "",
            }
        )
    return {"accounts": section}


def _cell(value: Any) -> str:
    """A markdown table cell: one line, `|` escaped."""
    return " ".join(str(value).split()).replace("|", "\\|")


def _code(value: Any) -> str:
    """Inline code that survives backticks in the value."""
    text = " ".join(str(value).split())
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def row_list(rows: Sequence[int]) -> str:
    """Row numbers, the first LISTED_ROWS of them ("… and N more")."""
    shown = ", ".join(str(r) for r in rows[:LISTED_ROWS])
    return shown + (f" and {len(rows) - LISTED_ROWS} more" if len(rows) > LISTED_ROWS else "")


def reason_text(line: dict[str, Any]) -> str:
    """Why a row is not done: its error code and message."""
    code, message = line.get("error_code", ""), line.get("error_message", "")
    return f"{code}: {message}" if code and message else code or message


def render_markdown(summary: dict[str, Any]) -> str:
    """summary.md from `summarize`'s content."""
    name = Path(summary["mapping"]).name or "mapping"
    lines = [f"# batchcert: {name}, {summary['started_at']} – {summary['finished_at']}", ""]
    if summary["interrupted"]:
        lines += ["**INTERRUPTED: the last session was stopped before it finished — see What to do next.**", ""]
    last = summary["sessions"][-1] if summary["sessions"] else None
    if last is not None and last["status"] == SessionStatus.STOPPED and last["note"]:
        lines += [f"**STOPPED: {last['note']}**", ""]
    if summary["rehearsal"]:
        lines += ["**REHEARSAL against the embedded emulator — nothing changed on Tencent Cloud.**", ""]
    source = "".join(
        f", {label} {summary[key]}" for label, key in (("sheet", "sheet"), ("encoding", "encoding")) if summary[key]
    )
    settings = ", ".join(f"{k} {v}" for k, v in summary["settings"].items() if k != "endpoint")
    lines += [
        f"- Run by {summary['operator'] or 'unknown'} with batchcert {summary['batchcert_version'] or 'unknown'}",
        f"- Mapping: `{summary['mapping']}` (sha256 `{summary['mapping_sha256']}`{source})",
    ]
    for ticket in summary["change_tickets"]:
        values = ", ".join(_code(v) for v in ticket["values"]) or "(empty)"
        more = f" and {ticket['more']} more" if ticket["more"] else ""
        lines.append(f"- Change ticket (column {_code(ticket['column'])}): {values}{more}")
    lines += [
        f"- Settings: {settings or 'none recorded'}",
        f"- Endpoint: {summary['endpoint']}  ·  SecretId: `{summary['secret_id']}`",
        f"- Started {summary['started_at']}, finished {summary['finished_at']}",
        f"- Rows: {summary['rows']}  ·  requests: "
        + (", ".join(f"{k} {v}" for k, v in summary["requests"].items()) or "none"),
    ]
    if summary["mapping_changed"]:
        lines.append(f"- **Note:** {summary['mapping_changed']}")
    for kept in summary["kept_files"]:
        lines.append(
            f"- **Note:** `{kept['kept']}` was changed since batchcert wrote it (or batchcert has no record of "
            f"writing it): it is kept as it is, and this report's version is `{kept['written']}`"
        )
    for note in summary["journal_warnings"]:
        lines += ["", f"**WARNING: {note}**"]
    for note in summary["certificate_warnings"]:
        lines += ["", f"**Certificate warning: {note}**"]
    if summary["journal_lost_records"]:
        rows = ", ".join(str(r) for r in summary["journal_lost_records"])
        lines += [
            "",
            f"**WARNING: the journal lost records: rows {rows} were changed by this run but their attempts were not "
            f"in the journal; the live state confirms each change (they are in {summary['rollback']['file']}).**",
        ]
    check = summary["verification"]
    if check["succeeded_but_live_state_differs"]:
        rows = ", ".join(str(r) for r in check["succeeded_but_live_state_differs"])
        lines += [
            "",
            f"**WARNING: rows {rows} succeeded but the live state read after the run shows something else "
            "— check them in the console before signing off.**",
        ]
    served = summary["served"]
    if served["false"]:
        lines += [
            "",
            f"**WARNING: the edge still served another certificate for {served['false']} changed row(s) when the "
            "probe gave up (served `false`): the service applied the change, clients do not see it yet — `batchcert "
            "rerun` probes them again.**",
            "",
            "| row | listener | domain | target | served SHA-256 | served subject | served notAfter |",
            "|---:|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['row']} | {_cell(r['listener_id'])} | {_cell(r['domain'])} | {_cell(r['certificate_id'])} | "
            f"{r['served_certificate_sha256'][:16]}… | {_cell(r['served_subject'])} | {r['served_not_after']} |"
            for r in served["not_served"]
        ]
        if served["not_served_total"] > len(served["not_served"]):
            lines.append(
                f"| … | {served['not_served_total'] - len(served['not_served'])} more in report.csv | | | | | |"
            )
    if summary["reverted"]:
        lines += [
            "",
            f"**WARNING: the service accepted and then reverted the change of row(s) {row_list(summary['reverted'])} "
            f"({CHANGE_REVERTED}): they are not done (retryable) — `batchcert rerun` reads them and sends them again.**",
        ]
    if summary["precondition_mismatch"]:
        lines += [
            "",
            f"**WARNING: row(s) {row_list(summary['precondition_mismatch'])} were not sent: the place no longer held "
            f"the certificate the file expected ({PRECONDITION_MISMATCH}) — someone changed it since the file was "
            "made.**",
        ]
    lines.append(
        f"- Verified against the live state after the run: {check['verified']} row(s) at their target"
        + (f", {check['not_checked']} done row(s) not checked" if check["not_checked"] else "")
        + (
            f", {check['pending']} still changing when last read (verified `pending`: `batchcert rerun` reads again)"
            if check["pending"]
            else ""
        )
    )
    if served["probed"]:
        lines.append(
            f"- What the edge serves: {served['true']} changed row(s) served their target"
            + (f", {served['false']} another certificate" if served["false"] else "")
            + (f", {served['unreachable']} could not be reached (a warning)" if served["unreachable"] else "")
        )
    lines += ["", "| outcome | rows |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in summary["counts"].items()]
    if summary["error_codes"]:
        lines += ["", "| error code | rows |", "|---|---:|"]
        lines += [f"| {_cell(k)} | {v} |" for k, v in summary["error_codes"].items()]
    if summary["transient_errors"]:
        got_past = ", ".join(f"{k} {v}" for k, v in summary["transient_errors"].items())
        lines += ["", f"Transient errors the run got past (retried; not in the table above): {got_past}"]
    if summary["codes_not_in_table"]:
        codes = ", ".join(f"`{c}`" for c in summary["codes_not_in_table"])
        lines += [
            "",
            f"Codes not in batchcert's classification table (treated by their family, else terminal): {codes}",
        ]
    if "accounts" in summary:
        lines += _account_lines(summary["accounts"])
    lines += _sessions_markdown(summary["sessions"])
    lines += _moves_markdown(summary["certificate_moves"])
    lines += _not_done_markdown(summary["not_done"])
    lines += _rollback_markdown(summary["rollback"])
    if summary["all_done"]:
        lines += ["", "Every row succeeded or was unchanged.", ""]
        return "\n".join(lines)
    lines += ["", "## What to do next", ""]
    lines += [f"- {step}" for step in summary["next_steps"]]
    lines.append("")
    return "\n".join(lines)


def _sessions_markdown(sessions: list[dict[str, Any]]) -> list[str]:
    lines = ["", "## Sessions", "", "| # | kind | started | finished | status | operator | SecretId | credentials |"]
    lines.append("|---:|---|---|---|---|---|---|---|")
    for n, s in enumerate(sessions, start=1):
        cells = (s["kind"], s["started_at"], s["finished_at"], s["status"], s["operator"] or "unknown")
        secret = f"`{_cell(s['secret_id'])}`" if s["secret_id"] else ""
        lines.append(f"| {n} | " + " | ".join(_cell(c) for c in cells) + f" | {secret} | {_cell(s['credentials'])} |")
    return lines


def _moves_markdown(moves: list[dict[str, Any]]) -> list[str]:
    lines = ["", "## Certificate moves", ""]
    if not moves:
        return [*lines, "This run changed no certificate."]
    lines += ["| kind | from | to | scope | places |", "|---|---|---|---|---:|"]
    lines += [
        f"| {m['kind']} | {_cell(m['from'])} | {_cell(m['to'])} | {_cell(m['scope'])} | {m['places']} |" for m in moves
    ]
    return lines


def _not_done_markdown(not_done: dict[str, Any]) -> list[str]:
    if not not_done["total"]:
        return []
    lines = ["", f"## Rows not done ({not_done['total']})", ""]
    lines += ["| row | listener | domain | outcome | reason |", "|---:|---|---|---|---|"]
    lines += [
        f"| {r['row']} | {_cell(r['listener_id'])} | {_cell(r['domain'] or '(listener)')} | {r['outcome']} | "
        f"{_cell(reason_text(r))} |"
        for r in not_done["rows"]
    ]
    if not_done["more"]:
        lines += ["", f"… and {not_done['more']} more: see {not_done['file']}"]
    return lines


def _rollback_markdown(rollback: dict[str, Any]) -> list[str]:
    lines = ["", "## Rollback", ""]
    if not rollback["rows"]:
        return [*lines, "Nothing to roll back: this run changed no row."]
    lines += [
        f"`{rollback['file']}` puts back the certificates read before the change on the {rollback['rows']} row(s) "
        "this run changed — each only where the place still holds what this run set (compare-and-swap):",
        "",
        f"    {rollback['command']}",
    ]
    if not rollback["targets_checked"]:
        lines += [
            "",
            "The restore targets could not be checked: the run did not read the account's certificates "
            "(DescribeCertificates).",
        ]
    elif rollback["refused_total"]:
        lines += _md_place_table(
            f"The service would refuse to roll back {rollback['refused_total']} row(s): what they restore cannot be "
            "installed now.",
            ["restores", "reason"],
            [[r["restores"], f"{r['code']}: {r['reason']}"] for r in rollback["refused"]],
            rollback["refused"],
            rollback["refused_total"],
        )
    elif not rollback["doubtful_total"]:
        lines += ["", "Every restore target exists, has the right type, has not expired and names its domain."]
    if rollback["doubtful_total"]:
        lines += _md_place_table(
            f"The service may refuse to roll back {rollback['doubtful_total']} row(s): the certificate they restore "
            "does not name the domain in its SubjectCN (an alternative name may cover it; the service decides).",
            ["restores", "reason"],
            [[r["restores"], r["reason"]] for r in rollback["doubtful"]],
            rollback["doubtful"],
            rollback["doubtful_total"],
        )
    if rollback["notes_total"]:
        lines += _md_place_table(
            f"{rollback['notes_total']} rollback line(s) cannot restore the previous state exactly:",
            ["note"],
            [[r["note"]] for r in rollback["notes"]],
            rollback["notes"],
            rollback["notes_total"],
        )
    return lines


def _md_place_table(
    title: str, more_columns: list[str], more_cells: list[list[Any]], places: list[dict[str, Any]], total: int
) -> list[str]:
    """A bold title and a table of rows of the run — row, listener, domain (a listener row's is "(listener)"), then
    `more_columns` — listing `places` of `total` ("… and N more" when the list was cut)."""
    lines = ["", f"**{title}**", "", "| row | listener | domain | " + " | ".join(more_columns) + " |"]
    lines.append("|---:|---|---|" + "---|" * len(more_columns))
    for place, cells in zip(places, more_cells, strict=True):
        shown = [str(place["row"]), _cell(place["listener_id"]), _cell(place["domain"] or "(listener)")]
        lines.append("| " + " | ".join(shown + [_cell(c) for c in cells]) + " |")
    if total > len(places):
        lines += ["", f"… and {total - len(places)} more"]
    return lines
