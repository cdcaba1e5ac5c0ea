"""The request gate: exact budgets and drained boundaries, with real greenlets."""

from __future__ import annotations

import gevent
import pytest

from memsoak.locust.gate import BudgetSpent, RequestGate, checkpoint_boundaries


def _drive(gate: RequestGate, users: int, seen: list[tuple[int, int]]) -> int:
    sent = 0

    def user() -> None:
        nonlocal sent
        while True:
            try:
                gate.acquire()
            except BudgetSpent:
                return
            sent += 1
            gevent.sleep(0.0005 * (sent % 3))  # uneven request times
            gate.release()

    gevent.joinall([gevent.spawn(user) for _ in range(users)], timeout=60)
    return sent


@pytest.mark.parametrize("users", [1, 3, 10, 64])
def test_budget_is_exact_and_boundaries_see_no_request_in_flight(users: int) -> None:
    seen: list[tuple[int, int]] = []
    gate: RequestGate

    def on_boundary(count: int) -> None:
        seen.append((count, gate.in_flight))
        gevent.sleep(0.01)  # a snapshot takes time; users must wait, not overshoot

    boundaries = checkpoint_boundaries(warmup=25, measured=1000, checkpoints=5)
    gate = RequestGate(boundaries, on_boundary)
    sent = _drive(gate, users, seen)
    gevent.sleep(0.05)
    assert sent == 1025 == gate.completed
    assert seen == [(25, 0), (225, 0), (425, 0), (625, 0), (825, 0), (1025, 0)]


def test_no_warmup_runs_the_first_boundary_before_any_request() -> None:
    order: list[str] = []
    gate = RequestGate([0, 10], lambda count: order.append(f"boundary {count}"))
    gate.acquire()
    order.append("first request")
    gate.release()
    for _ in range(9):
        gate.acquire()
        gate.release()
    gevent.sleep(0.01)
    assert order[:2] == ["boundary 0", "first request"]
    with pytest.raises(BudgetSpent):
        gate.acquire()


def test_close_releases_waiting_users() -> None:
    gate = RequestGate([1, 2], lambda count: gevent.sleep(10))
    gate.acquire()
    gate.release()  # boundary 1 now "runs" for 10 s
    waiter = gevent.spawn(gate.acquire)
    gevent.sleep(0.01)
    gate.close()
    waiter.join(timeout=5)
    assert isinstance(waiter.exception, BudgetSpent)


def test_checkpoint_boundaries() -> None:
    assert checkpoint_boundaries(200, 10_000, 5) == [200, 2200, 4200, 6200, 8200, 10200]
    assert checkpoint_boundaries(0, 3, 5) == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        RequestGate([5, 5], lambda c: None)


def test_a_boundary_can_end_the_run_early_after_a_few_more_requests() -> None:
    """--until-confident settles at a checkpoint, then sends a short window and stops there."""
    seen: list[tuple[int, int]] = []
    gate: RequestGate

    def on_boundary(count: int) -> None:
        seen.append((count, gate.in_flight))
        if count == 30:
            with pytest.raises(ValueError):
                gate.end_at(30)  # an end must come after the current boundary
            gate.end_at(45)

    gate = RequestGate([10, 20, 30, 40, 100], on_boundary)
    sent = _drive(gate, 7, seen)
    assert sent == 45 and gate.completed == 45
    assert seen == [(10, 0), (20, 0), (30, 0), (45, 0)]
    with pytest.raises(RuntimeError):
        gate.end_at(50)  # not from a boundary's action


def test_the_last_boundary_can_add_requests_for_users_already_waiting() -> None:
    """The default run's last snapshot comes at its last request; the windows after it add
    requests from there. Users that asked for a token while that action ran must get them."""
    seen: list[tuple[int, int]] = []
    gate: RequestGate

    def on_boundary(count: int) -> None:
        seen.append((count, gate.in_flight))
        gevent.sleep(0.01)  # every user is back asking by now
        if count in (20, 30):
            gate.end_at(count + 10)

    gate = RequestGate([10, 20], on_boundary)
    sent = _drive(gate, 5, seen)
    assert sent == 40 == gate.completed
    assert seen == [(10, 0), (20, 0), (30, 0), (40, 0)]


def test_an_action_can_resume_the_load_before_it_ends() -> None:
    """A forked snapshot: the action resumes the load once the state is taken and goes on
    (receiving the document) while requests flow towards the next boundary, even past it."""
    seen: list[tuple[int, int, int]] = []  # (boundary, requests completed when it resumed, in flight)
    finished: list[int] = []
    gate: RequestGate

    def on_boundary(count: int) -> None:
        seen.append((count, gate.completed, gate.in_flight))
        if count == 20:
            with pytest.raises(RuntimeError):
                gate.resume()
                gate.end_at(90)  # too late: the budget may be on its way
        gate.resume()
        gevent.sleep(0.05)  # the document arriving, while users send requests
        finished.append(count)

    gate = RequestGate([10, 20, 30, 60], on_boundary)
    sent = _drive(gate, 5, [])
    gevent.sleep(0.1)
    assert sent == 60 == gate.completed
    # Every boundary still saw exactly its requests with none in flight, and every action ended.
    assert seen == [(10, 10, 0), (20, 20, 0), (30, 30, 0), (60, 60, 0)]
    assert sorted(finished) == [10, 20, 30, 60]


def test_resume_outside_an_action_changes_nothing() -> None:
    gate = RequestGate([1, 3], lambda count: gevent.sleep(10))
    gate.acquire()
    gate.release()  # boundary 1 holds the load for 10 s
    gevent.sleep(0.01)
    waiter = gevent.spawn(gate.acquire)
    gate.resume()  # not the action's greenlet: the load stays held
    gevent.sleep(0.01)
    assert not waiter.dead and gate.issued == 1
    waiter.kill()
    gate.close()


def test_drain_can_resume_early_too() -> None:
    gate = RequestGate([0], lambda count: None, open_ended=True)
    gevent.sleep(0.01)
    got: list[int] = []

    def action(completed: int) -> None:
        gate.resume()
        gate.acquire()  # would wait forever if the drain still held the load
        got.append(completed)
        gate.release()

    gate.drain(action)
    assert got == [0] and gate.completed == 1
