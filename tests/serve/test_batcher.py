"""The micro-batcher: concurrent single-ticket calls share predict calls, answers stay per ticket."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from model.artifact import load_router
from model.router import Router, RouteResult
from serve import batcher as batcher_module
from serve.batcher import MicroBatcher

TICKETS = [
    ("欠薪", "老板拖欠工资三个月"),
    ("油烟", "烧烤店油烟扰民"),
    ("电梯", "电梯故障物业不修"),
    ("", "公积金提取手续麻烦"),
    ("社保", "公司不给缴纳社保"),
    ("噪音", "广场舞噪音扰民"),
]


class CountingRouter:
    """Wraps a real router, recording the size of every predict call and the thread it ran on."""

    def __init__(self, router: Router, fail_on: str | None = None) -> None:
        self.router = router
        self.version = router.version
        self.calls: list[int] = []
        self.threads: set[int] = set()
        self.fail_on = fail_on

    def predict(self, tickets: Any, **kwargs: Any) -> list[RouteResult]:
        self.calls.append(len(tickets))
        self.threads.add(threading.get_ident())
        if self.fail_on and any(self.fail_on in t[1] for t in tickets):
            if len(tickets) == 1:
                raise ValueError("broken ticket")
            raise ValueError("a ticket in this batch is broken")
        return self.router.predict(tickets, **kwargs)


@pytest.fixture(scope="module")
def router(tiny_model_dir: Path) -> Router:
    r, _ = load_router(tiny_model_dir)
    return r


async def _route_all(batcher: MicroBatcher, router: Any, top_ks: list[int]) -> list[Any]:
    return await asyncio.gather(
        *(batcher.predict(router, t, k) for t, k in zip(TICKETS, top_ks, strict=True)),
        return_exceptions=True,
    )


def test_concurrent_calls_are_batched_and_match_one_by_one(router: Router) -> None:
    counting: Any = CountingRouter(router)  # stands in for a Router
    batcher = MicroBatcher(similar_k=5)
    top_ks = [1, 2, 3, 1, 2, 3]
    results = asyncio.run(_route_all(batcher, counting, top_ks))
    assert sum(counting.calls) == len(TICKETS)
    assert len(counting.calls) < len(TICKETS), counting.calls  # shared calls
    assert threading.get_ident() not in counting.threads  # never on the event loop's thread
    for ticket, k, got in zip(TICKETS, top_ks, results, strict=True):
        alone = router.predict([ticket], top_k=k, similar_k=5)[0]
        assert got == alone


def test_a_broken_ticket_fails_alone(router: Router) -> None:
    counting = CountingRouter(router, fail_on="公积金")
    results = asyncio.run(_route_all(MicroBatcher(similar_k=5), counting, [3] * len(TICKETS)))
    for ticket, got in zip(TICKETS, results, strict=True):
        if "公积金" in ticket[1]:
            assert isinstance(got, ValueError)
        else:
            assert isinstance(got, RouteResult), got
            assert got == router.predict([ticket], similar_k=5)[0]


def test_under_load_a_call_waits_for_the_previous_calls_clients(router: Router) -> None:
    """A straggler arriving during a call does not get a call of its own."""
    counting: Any = CountingRouter(router)  # stands in for a Router
    batcher = MicroBatcher(similar_k=0)

    async def scenario() -> None:
        # Four clients: one call of four.
        await asyncio.gather(*(batcher.predict(counting, t, 3) for t in TICKETS[:4]))
        assert counting.calls == [4]
        # They come back one by one, the first alone and the rest a moment later.
        first = asyncio.ensure_future(batcher.predict(counting, TICKETS[4], 3))
        await asyncio.sleep(0)
        rest = [asyncio.ensure_future(batcher.predict(counting, t, 3)) for t in TICKETS[:3]]
        await asyncio.gather(first, *rest)

    asyncio.run(scenario())
    assert counting.calls == [4, 4], counting.calls  # not [4, 1, 3]


def test_the_wait_for_stragglers_is_bounded(router: Router, monkeypatch: Any) -> None:
    """If the previous call's clients do not come back, the one that did is still answered."""
    monkeypatch.setattr(batcher_module, "FILL_WAIT_S", 0.05)
    counting: Any = CountingRouter(router)  # stands in for a Router
    batcher = MicroBatcher(similar_k=0)

    async def scenario() -> RouteResult:
        await asyncio.gather(*(batcher.predict(counting, t, 3) for t in TICKETS[:4]))
        return await asyncio.wait_for(batcher.predict(counting, TICKETS[4], 3), timeout=10)

    assert isinstance(asyncio.run(scenario()), RouteResult)
    assert counting.calls == [4, 1]


def test_a_lone_request_after_a_pause_does_not_wait(router: Router, monkeypatch: Any) -> None:
    waits: list[int] = []
    original = MicroBatcher._fill

    async def fill(self: MicroBatcher, target: int) -> None:
        waits.append(target)
        await original(self, target)

    monkeypatch.setattr(MicroBatcher, "_fill", fill)
    monkeypatch.setattr(batcher_module, "UNDER_LOAD_S", 0.02)
    counting: Any = CountingRouter(router)  # stands in for a Router
    batcher = MicroBatcher(similar_k=0)

    async def scenario() -> None:
        await asyncio.gather(*(batcher.predict(counting, t, 3) for t in TICKETS[:4]))
        await asyncio.sleep(0.05)  # the load is gone
        await batcher.predict(counting, TICKETS[4], 3)
        # One request at a time: never a wait either.
        for t in TICKETS[:3]:
            await batcher.predict(counting, t, 3)

    asyncio.run(scenario())
    assert counting.calls == [4, 1, 1, 1, 1]
    assert waits == []


class HeldRouter(CountingRouter):
    """A router whose first call waits until released, so that requests queue behind it."""

    def __init__(self, router: Router) -> None:
        super().__init__(router)
        self.started = threading.Event()
        self.release = threading.Event()
        self.seen: list[tuple[str, str]] = []

    def predict(self, tickets: Any, **kwargs: Any) -> list[RouteResult]:
        self.seen.extend(tickets)
        self.started.set()
        assert self.release.wait(timeout=30)
        return super().predict(tickets, **kwargs)


async def _staying() -> dict[str, Any]:
    """The ``receive`` of a client that waits for its answer: no message until it is sent."""
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


def _leaving(left: asyncio.Event) -> Any:
    """The ``receive`` of a client that closes its connection once ``left`` is set."""

    async def receive() -> dict[str, Any]:
        await left.wait()
        return {"type": "http.disconnect"}

    return receive


async def _until(event: threading.Event) -> None:
    for _ in range(3000):
        if event.is_set():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the call did not start")


def test_a_ticket_whose_client_left_before_its_call_is_never_predicted(router: Router) -> None:
    # uvicorn does not cancel a request whose client leaves: every abandoned ticket was predicted,
    # ahead of the live clients' ones.
    held: Any = HeldRouter(router)
    batcher = MicroBatcher(similar_k=0)

    async def scenario() -> list[RouteResult]:
        left = asyncio.Event()
        first = asyncio.ensure_future(batcher.predict(held, TICKETS[0], 3, receive=_staying))
        await _until(held.started)  # a call is running: the next tickets wait for the next one
        gone = asyncio.ensure_future(batcher.predict(held, TICKETS[1], 3, receive=_leaving(left)))
        live = asyncio.ensure_future(batcher.predict(held, TICKETS[2], 3, receive=_staying))
        await asyncio.sleep(0)
        left.set()
        with pytest.raises(batcher_module.ClientLeft):
            await asyncio.wait_for(gone, timeout=10)
        held.release.set()
        return list(await asyncio.gather(first, live))

    first, live = asyncio.run(scenario())
    assert held.seen == [TICKETS[0], TICKETS[2]]
    assert held.calls == [1, 1]
    assert first == router.predict([TICKETS[0]], top_k=3, similar_k=0)[0]
    assert live == router.predict([TICKETS[2]], top_k=3, similar_k=0)[0]


def test_a_client_that_leaves_during_its_call_is_let_go_at_once(router: Router) -> None:
    held: Any = HeldRouter(router)
    batcher = MicroBatcher(similar_k=0)

    async def scenario() -> RouteResult:
        left = asyncio.Event()
        gone = asyncio.ensure_future(batcher.predict(held, TICKETS[0], 3, receive=_leaving(left)))
        await _until(held.started)
        left.set()
        with pytest.raises(batcher_module.ClientLeft):  # before the call it is in has ended
            await asyncio.wait_for(gone, timeout=10)
        held.release.set()
        # The batcher goes on: the next client is answered.
        return await asyncio.wait_for(
            batcher.predict(held, TICKETS[1], 3, receive=_staying), timeout=30
        )

    assert asyncio.run(scenario()) == router.predict([TICKETS[1]], top_k=3, similar_k=0)[0]
    assert held.seen == [TICKETS[0], TICKETS[1]]


def test_a_cancelled_request_is_cancelled_not_taken_for_a_client_that_left(
    router: Router,
) -> None:
    held: Any = HeldRouter(router)
    batcher = MicroBatcher(similar_k=0)

    async def scenario() -> None:
        waiting = asyncio.ensure_future(batcher.predict(held, TICKETS[0], 3, receive=_staying))
        await _until(held.started)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        held.release.set()

    asyncio.run(scenario())
