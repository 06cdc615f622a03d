"""Ctrl-C and SIGTERM are held during lazy imports and delivered right after."""

from __future__ import annotations

import os
import signal

import pytest

from xai.core.interrupts import Terminated, deferred_interrupts, terminate_as_exception


def _signal_inside(sig: int, finished: list[str]) -> None:
    with deferred_interrupts():
        os.kill(os.getpid(), sig)
        finished.append("the body ran to its end")  # not cut short by the signal


@pytest.mark.parametrize(
    ("sig", "raised"), [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)]
)
def test_a_signal_inside_the_block_is_delivered_after_it(sig, raised):
    finished: list[str] = []
    with pytest.raises(raised):
        _signal_inside(sig, finished)
    assert finished == ["the body ran to its end"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_without_a_signal_nothing_happens():
    with deferred_interrupts():
        value = 1
    assert value == 1


def _terminated_mid_loop(cleaned: list[bool]) -> None:
    with terminate_as_exception():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10**6):  # the signal is delivered between bytecodes
                pass
        finally:
            cleaned.append(True)


def test_sigterm_becomes_an_exception_so_finally_blocks_run():
    cleaned: list[bool] = []
    with pytest.raises(Terminated):
        _terminated_mid_loop(cleaned)
    assert cleaned == [True]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
