"""The one waiting and retrying helper that deploy, smoke, push and the search storage share.

Time is asserted on a clock the test drives (`Clock`): the seconds waited, the checks made and
the pauses slept are exact, with no race against a loaded machine. A waiter that pauses too
little and a retry that never pauses, kept as cases, fail those assertions."""

import pytest

from sail_pipelines import polling
from sail_pipelines.errors import SailError
from sail_pipelines.polling import retry, wait_until


class Clock:
    """`time` as polling sees it: monotonic() reads the clock, sleep() moves it and is recorded."""

    def __init__(self):
        self.now, self.slept = 1000.0, []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    made = Clock()
    monkeypatch.setattr(polling, "time", made)
    return made


def _hurried_wait_until(ready, timeout, interval, timed_out):
    """A mutation of wait_until: pauses a tenth of the interval between checks."""
    start = polling.time.monotonic()
    while polling.time.monotonic() - start < timeout:
        if ready():
            return polling.time.monotonic() - start
        polling.time.sleep(interval / 10)
    raise timed_out()


def _hasty_retry(action, attempts, pause, retry_on, on_retry=None):
    """A mutation of retry: tells the pause, never takes it."""
    for attempt in range(1, attempts):
        try:
            return action()
        except retry_on as exc:
            if on_retry is not None:
                on_retry(attempt, exc, pause(attempt))
    return action()


@pytest.mark.parametrize(
    "waiter", [wait_until, _hurried_wait_until], ids=["real", "hurried-mutation"]
)
def test_wait_until_asks_every_interval_and_returns_the_seconds_waited(clock, waiter):
    answers = iter([False, False, True])
    asked = []

    def ready() -> bool:
        asked.append(clock.now)
        return next(answers)

    seconds = waiter(ready, 5, 0.25, lambda: SailError("never"))
    schedule = (seconds, asked, clock.slept)
    expected = (0.5, [1000.0, 1000.25, 1000.5], [0.25, 0.25])
    assert (schedule == expected) == (waiter is wait_until), schedule


@pytest.mark.parametrize(
    "waiter", [wait_until, _hurried_wait_until], ids=["real", "hurried-mutation"]
)
def test_wait_until_gives_up_only_once_the_timeout_has_passed(clock, waiter):
    asked = []

    def never() -> bool:
        asked.append(clock.now)
        return False

    start = clock.now
    with pytest.raises(SailError, match="not ready within 1s"):
        waiter(never, 1, 0.25, lambda: SailError("not ready within 1s"))
    waited = clock.now - start
    # asked at 0, 0.25, 0.5, 0.75; the pause after the last brings the clock to the timeout
    fits = waited == 1.0 and asked == [start + 0.25 * n for n in range(4)]
    assert fits == (waiter is wait_until), (waited, asked)


@pytest.mark.parametrize("retrier", [retry, _hasty_retry], ids=["real", "hasty-mutation"])
def test_retry_pauses_the_backoff_it_announces_between_attempts(clock, retrier):
    attempts_at = []

    def action() -> None:
        attempts_at.append(clock.now)
        raise ConnectionError("down")

    told = []
    with pytest.raises(ConnectionError):
        retrier(action, 4, lambda n: 0.5 * 2 ** (n - 1), ConnectionError, lambda *t: told.append(t))
    gaps = [round(b - a, 9) for a, b in zip(attempts_at, attempts_at[1:], strict=False)]
    assert [s for _, _, s in told] == [0.5, 1.0, 2.0]
    assert (gaps == [0.5, 1.0, 2.0]) == (retrier is retry), gaps


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
