from g5kdeploy.reserve.polling import BACKOFF, FAST_POLL, PollState


def simulate(start: float, launch: float, submitted: float = 0.0):
    """Poll a job predicted to start at ``start`` that runs ``launch`` seconds later; count the GETs."""
    state, now, gets = PollState(), submitted, 0
    while True:
        gets += 1
        if now >= start + launch:
            return gets, now - (start + launch)
        job = {"state": "launching" if now >= start else "waiting", "scheduled_at": start}
        now += state.next_delay(job, now)


def test_two_hour_wait_detects_the_start_within_a_second_with_few_requests():
    gets, late = simulate(start=7200, launch=5)
    assert late <= 1.0
    assert gets < 45


def test_without_prediction_polls_back_off_and_never_faster_than_5_s():
    state = PollState()
    delays = [state.next_delay({"state": "waiting"}, 0.0) for _ in range(8)]
    assert delays == [*BACKOFF, BACKOFF[-1], BACKOFF[-1], BACKOFF[-1]]
    assert min(delays) >= 5.0


def test_stale_prediction_falls_back_to_backoff():
    state = PollState()
    assert state.next_delay({"state": "waiting", "scheduled_at": 100}, 105) == FAST_POLL
    assert state.next_delay({"state": "waiting", "scheduled_at": 100}, 200) == BACKOFF[0]


def test_prediction_far_ahead_is_reread_before_it_could_move():
    assert PollState().next_delay({"state": "waiting", "scheduled_at": 86400}, 0) == 600
