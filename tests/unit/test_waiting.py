"""Every wait of the agent on this machine's clock: its result, and what a timeout tells the user."""

from __future__ import annotations

import pytest

from g5kdeploy import errors
from g5kdeploy.waiting import wait_until


def test_a_wait_that_times_out_names_what_it_waited_for_and_what_is_known():
    with pytest.raises(errors.DeadlineExceeded) as caught:
        wait_until(
            lambda: False,
            timeout=0.2,
            what="Prometheus at http://127.0.0.2:9090 to be ready",
            detail=lambda: "its log ends with:\nlevel=error msg=boom",
        )
    assert str(caught.value) == (
        "timed out after 0.2 s waiting for Prometheus at http://127.0.0.2:9090 to be ready; "
        "its log ends with:\nlevel=error msg=boom"
    )


def test_the_wait_returns_what_the_condition_found():
    answers = iter([None, "", "listening on 127.0.0.1:8080"])
    assert wait_until(lambda: next(answers), timeout=30, what="the URL", interval=0.01) == "listening on 127.0.0.1:8080"


def test_the_condition_can_end_the_wait_early():
    def exited() -> bool:
        raise errors.TestbedError("sshd exited at start")

    with pytest.raises(errors.TestbedError, match="sshd exited at start"):
        wait_until(exited, timeout=30, what="sshd to answer")
