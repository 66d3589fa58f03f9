"""The one waiting and retrying helper that deploy, smoke, push and the search storage share."""

import pytest

from sail_pipelines.errors import SailError
from sail_pipelines.polling import retry, wait_until


def test_wait_until_returns_the_seconds_once_ready():
    answers = iter([False, False, True])
    seconds = wait_until(lambda: next(answers), 5, 0.01, lambda: SailError("never"))
    assert 0.02 <= seconds < 1


def test_wait_until_raises_the_timeout_error_when_time_runs_out():
    with pytest.raises(SailError, match="not ready within 0.1s"):
        wait_until(lambda: False, 0.1, 0.01, lambda: SailError("not ready within 0.1s"))


def test_a_check_that_raises_stops_the_wait_at_once():
    calls = []

    def dead() -> bool:
        calls.append(1)
        raise SailError("the server exited with code 3")

    with pytest.raises(SailError, match="exited with code 3"):
        wait_until(dead, 30, 0.01, lambda: SailError("timed out"))
    assert len(calls) == 1


def test_retry_tells_each_retry_and_returns_the_first_success():
    failures = iter([ConnectionError("down"), ConnectionError("still down")])
    told = []

    def action() -> str:
        error = next(failures, None)
        if error is not None:
            raise error
        return "pushed"

    result = retry(
        action, 4, lambda n: 0.01 * 2 ** (n - 1), ConnectionError, lambda *t: told.append(t)
    )
    assert result == "pushed"
    assert [(n, str(e), s) for n, e, s in told] == [(1, "down", 0.01), (2, "still down", 0.02)]


def test_retry_gives_up_after_the_attempts_with_the_last_error():
    calls = []

    def action() -> None:
        calls.append(1)
        raise ConnectionError(f"down {len(calls)}")

    with pytest.raises(ConnectionError, match="down 3"):
        retry(action, 3, lambda n: 0.0, ConnectionError)
    assert len(calls) == 3


def test_retry_never_retries_an_error_it_was_not_told_may_pass():
    calls = []

    def action() -> None:
        calls.append(1)
        raise ValueError("a bad URL stays bad")

    with pytest.raises(ValueError, match="stays bad"):
        retry(action, 5, lambda n: 0.0, (ConnectionError, TimeoutError))
    assert len(calls) == 1
