"""Which partners an initiator leaves alone after a failed exchange: a
staller is penalised, a pulled cable is not (gossipfl/node/penalties.py)."""

from __future__ import annotations

from gossipfl.node.penalties import Penalties


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_partner_that_runs_out_the_deadline_is_left_alone_for_the_penalty() -> None:
    clock = Clock()
    penalties = Penalties(clock)
    verdict = penalties.failed("staller", stalled=True, proven=True)
    assert verdict.penalised
    assert verdict.retry_cap_s is None
    clock.now += 29
    assert penalties.barred() == {"staller"}
    assert penalties.next_free() == 1030.0
    clock.now += 2
    assert penalties.barred() == set()


def test_a_refused_or_unreachable_partner_is_not_penalised() -> None:
    penalties = Penalties(Clock())
    assert not penalties.failed("gone", stalled=False, proven=True).penalised
    assert penalties.barred() == set()


def test_a_pulled_cable_penalises_only_the_first_partner_and_keeps_retries_short() -> None:
    """Defect: with the cable pulled, every partner in turn ran out its
    deadline and was penalised; the host sat out 30 s after the heal."""
    penalties = Penalties(Clock())
    first = penalties.failed("a", stalled=True, proven=True)
    second = penalties.failed("b", stalled=True, proven=True)
    third = penalties.failed("c", stalled=False, proven=True)  # connect timed out
    assert first.penalised
    assert not first.own_link
    assert not second.penalised
    assert second.own_link
    assert second.retry_cap_s == 4.0
    assert third.own_link
    assert third.retry_cap_s == 4.0
    assert penalties.barred() == {"a"}


def test_the_same_partner_failing_again_is_no_sign_of_our_own_link() -> None:
    penalties = Penalties(Clock())
    penalties.failed("staller", stalled=False, proven=True)
    assert penalties.failed("staller", stalled=True, proven=True).penalised


def test_an_outsiders_unproven_announcements_failing_say_nothing_about_our_link() -> None:
    """A flood of fakes fails by the hundred: that must not spare a staller
    its penalty, nor shorten the fakes' backoff."""
    penalties = Penalties(Clock())
    for i in range(50):
        verdict = penalties.failed(f"fake{i}", stalled=False, proven=False)
        assert not verdict.own_link
        assert verdict.retry_cap_s is None
    assert penalties.failed("staller", stalled=True, proven=True).penalised


def test_an_exchange_in_between_means_the_next_staller_is_penalised() -> None:
    penalties = Penalties(Clock())
    penalties.failed("a", stalled=False, proven=True)
    penalties.exchanged("honest", they_started=False)
    assert penalties.failed("b", stalled=True, proven=True).penalised


def test_a_penalised_partner_that_exchanges_with_us_again_is_forgiven_once() -> None:
    """The other end of a pulled cable penalised the host; once the host
    is back and starts an exchange, it is chosen again.  A staller that
    does the same gains one more stall per interval, not one per exchange."""
    clock = Clock()
    penalties = Penalties(clock)
    penalties.failed("back", stalled=True, proven=True)
    penalties.exchanged("back", they_started=False)  # one we started: no proof it answers us
    assert penalties.barred() == {"back"}
    penalties.exchanged("back", they_started=True)
    assert penalties.barred() == set()
    clock.now += 10
    penalties.failed("back", stalled=True, proven=True)
    penalties.exchanged("back", they_started=True)
    assert penalties.barred() == {"back"}  # forgiven 10 s ago already
    clock.now += 600
    penalties.failed("back", stalled=True, proven=True)
    penalties.exchanged("back", they_started=True)
    assert penalties.barred() == set()
