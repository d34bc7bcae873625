"""hub/backpressure.py: a client that falls behind skips to the next keyframe it can take."""

from __future__ import annotations

from gateway.hub.backpressure import KeyframeSkip


def test_a_client_keeping_up_gets_every_frame():
    policy = KeyframeSkip()
    assert [policy.admit(k) for k in (True, False, False, True, False)] == [True] * 5
    assert policy.skips == 0 and not policy.skipping


def test_falling_behind_skips_to_the_next_keyframe_the_client_can_take():
    policy = KeyframeSkip()
    frames = [
        (True, False, True),  # (keyframe, behind, admitted)
        (False, True, False),  # the queue is full: this one and the rest of the GOP go
        (False, False, False),
        (True, True, False),  # a keyframe, but the client still cannot take it
        (False, False, False),
        (True, False, True),  # resumes here
        (False, False, True),
    ]
    assert [policy.admit(key, behind) for key, behind, _ in frames] == [admitted for *_, admitted in frames]
    assert policy.skips == 1  # one fall, however many frames it cost


def test_fall_behind_counts_each_fall_once():
    policy = KeyframeSkip()
    policy.fall_behind()
    policy.fall_behind()
    assert policy.skips == 1 and not policy.admit(False)
    assert policy.admit(True)
    policy.fall_behind()
    assert policy.skips == 2 and policy.skipping


def test_restart_takes_the_next_frame_whatever_it_is():
    policy = KeyframeSkip()
    policy.fall_behind()
    policy.restart()
    assert policy.admit(False) and policy.skips == 1
