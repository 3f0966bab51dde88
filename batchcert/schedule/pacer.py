"""Pacing per listener: `ListenerPacer` (the send-to-send gap two changes on one listener need) and `TaskTimer` (when
the read after a listener's last change should go), both learned run-wide from the service's answers
(docs/scheduling.md, "Listener pacing" and "Read-back").
"""

from __future__ import annotations

import logging

# the scheduler's log keeps the name it always had (a --verbose line shows it)
log = logging.getLogger("batchcert.schedule")

#: The least send-to-send gap `ListenerPacer` keeps on one listener while the service has refused nothing: the event
#: loop's timer resolution (1 ms). A real GAAP task takes seconds (docs/gaap-api.md, "Listener tasks"), so the probe
#: meets a refusal long before this; it binds only against a service whose tasks end at once — an emulator or a
#: rehearsal — where any higher floor only idles the run: at 20 ms the bench's 30,000-row run (3,333 rows on each of
#: three listeners) took 84 s, at 5 ms 34 s, and its three long listeners still finished after the others, in a tail
#: where every change woke an idle process (docs/scheduling.md, "CPU").
GAP_FLOOR_S = 0.001


class ListenerPacer:
    """Learns the send-to-send gap two changes on one listener need (GAAP changes are asynchronous tasks).

    The service starts a listener's task when it processes a change and refuses the next change with
    `ListenerHasTask` until the task ends, so what matters is the gap between two *sends*, not the time after an
    answer: a listener then takes a change every `task` seconds instead of every `task + latency`. Learned run-wide
    (task time is a property of the service): a refusal at gap g proves the task is longer than g (`busy_s` rises to
    g); the pacer keeps 10% + 10 ms above that. Until the first refusal it probes downward from the initial guess by
    10% per accepted change, and every 20 accepted changes it lowers `busy_s` by 5% to follow a service that got
    faster — so refusals stay rare. Two refusals in a row, the second although the pacer's own gap was kept, mean
    the estimate is far off (tasks of several seconds are possible: Terraform waits minutes for GAAP listeners), so
    `busy_s` doubles: a long task is learned in a few refusals, not dozens of +10% steps. (One refusal at the
    pacer's gap is the expected end of a downward probe, and only sets `busy_s`.) A doubled estimate is a guess,
    not a measurement — two refusals in a row also happen when the first change's request was slow to arrive — so
    it comes down again by 10% per accepted change, never below the gap a refusal proved too short, and the pacer
    settles there; otherwise one unlucky pair of refusals would keep a long listener at twice its task time for
    hundreds of changes.
    """

    def __init__(self, initial_s: float, floor_s: float = GAP_FLOOR_S, cap_s: float = 30.0) -> None:
        self._probe_s = initial_s
        self.busy_s: float | None = None
        self._floor_s, self._cap_s = floor_s, cap_s
        self._accepted = 0
        self._refused_last = False
        #: after a doubling: the longest gap a refusal proved too short, which the fast way down stops at
        self._proven_s: float | None = None

    @property
    def gap_s(self) -> float:
        """The send-to-send gap to keep between two changes on one listener, in seconds."""
        if self.busy_s is None:
            return self._probe_s
        return min(self._cap_s, max(self._floor_s, self.busy_s * 1.1 + 0.01))

    def accepted(self, gap_s: float) -> None:
        """A change sent `gap_s` after the listener's previous one was accepted."""
        self._accepted += 1
        self._refused_last = False
        if self.busy_s is None:
            self._probe_s = max(self._floor_s, min(self._probe_s, gap_s) * 0.9)
        elif self._proven_s is not None:
            self.busy_s = max(self._proven_s, self.busy_s * 0.9)
            if self.busy_s == self._proven_s:
                self._proven_s = None
        elif self._accepted % 20 == 0:
            self.busy_s *= 0.95

    def refused(self, gap_s: float) -> None:
        """A change sent `gap_s` after the listener's previous one got ListenerHasTask."""
        before = self.busy_s
        if before is not None and self._refused_last and gap_s >= self.gap_s * 0.999:
            self._proven_s = max(before, gap_s)
            self.busy_s = self._proven_s * 2
        else:
            self.busy_s = max(before or 0.0, gap_s)
            self._proven_s = None
        self._refused_last = True
        if before != self.busy_s:
            log.info("listener tasks take over %.3f s: changes on one listener now %.3f s apart", gap_s, self.gap_s)


#: The shortest pause between two read-backs of a listener whose task still runs: a read's round trip at the
#: lowest latency a real account answers in (docs/scheduling.md, "Read-back").
POLL_FLOOR_S = 0.05


class TaskTimer:
    """How long after a change is sent a read of its listener shows it idle again, learned run-wide from the
    read-backs, so the read after a listener's last change goes when its task has ended: not at once (a read that
    only shows the task still running) nor a retry backoff late (docs/scheduling.md, "Read-back").

    The estimate starts at a guess. A read-back that saw the task still running `changing_s` after the change and
    idle `idle_s` after sets it to `idle_s`; one whose first read, sent at about the estimate, was idle already
    brings it down 10% (the guess was high, or the service got faster), never below the last `changing_s` — the
    pacer's way of probing down (`ListenerPacer`); a first read sent later than the estimate says nothing. While a task still runs, reads go `poll_s` apart: a fifth of
    the estimate (at least `POLL_FLOOR_S`), doubling per read. Times are between the two requests' sends, so a read
    that waited at the gate does not count as task time.
    """

    def __init__(self, initial_s: float) -> None:
        self.estimate_s = initial_s
        #: lower the estimate when a first read finds the task over; off while the run sends in bursts, where a read
        #: that comes too early waits a whole window of the gate for its next try (docs/scheduling.md, "Read-back")
        self.probe_down = True
        self._proven_s = 0.0
        #: a read-back has seen a task running and then ended: the estimate is a measurement, not the guess
        self.measured = False

    @staticmethod
    def follow_s(elapsed_s: float) -> float:
        """The pause between two reads that follow a task to measure it, `elapsed_s` after its change was sent: a
        quarter of the time so far (at least `POLL_FLOOR_S`), so the measurement is off by a quarter at most and a
        task of seconds costs about twenty reads, once per run."""
        return max(POLL_FLOOR_S, elapsed_s / 4)

    def poll_s(self, reads_changing: int) -> float:
        """The pause after the `reads_changing`-th read (1 for the first) that showed the task still running."""
        return float(max(POLL_FLOOR_S, 0.2 * self.estimate_s) * 2 ** max(0, reads_changing - 1))

    def observed(self, changing_s: float | None, idle_s: float) -> None:
        """A read-back ended: its last read that showed the task running was sent `changing_s` after the change
        (None: its first read was idle already), the read that showed it idle `idle_s` after."""
        if changing_s is not None:
            self._proven_s = changing_s
            self.estimate_s = max(changing_s, idle_s)
            self.measured = True
        elif self.probe_down and idle_s <= self.estimate_s + POLL_FLOOR_S:
            # sent at about the estimate and idle: maybe earlier would have done (a read sent later — at an older
            # estimate, or held at the gate — says nothing)
            self.estimate_s = max(self._proven_s, min(self.estimate_s, idle_s) * 0.9)
