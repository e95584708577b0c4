"""Micro-batching: concurrent ``POST /v1/route`` calls share one vectorised ``Router.predict``.

A prediction call has a fixed cost and a cost per ticket that falls as the batch grows (the heads
read each feature's weights once per call), so a batch of 32 real tickets costs about half of
what the same tickets cost one call each (``benchmarks/README.md``). Prediction always runs in the
threadpool, never on the event loop. Results do not depend on the batch: every row is computed on
its own.

When a call starts:

* **A lone request** starts a prediction at once (no waiting window, so it is not delayed).
* **Under load** the clients of the previous call send their next tickets together, a few
  milliseconds after their answers. Requests arriving while a call runs go in the next call; if
  that call would hold fewer tickets than the previous one, it waits up to :data:`FILL_WAIT_S`
  for the rest. Without that wait a server at concurrency 32 settled into calls of 2 and 30
  tickets in turn, and the call of 2 took as much CPU as 6 tickets of the call of 30.

A request whose client closes its connection before its answer (a client's or a proxy's timeout, a
closed tab, a retry) is dropped: its ticket is left out of the calls not yet started, and the
answer of one already running is thrown away. The server does not cancel a request when its client
leaves, so each waiting request watches its connection (:meth:`MicroBatcher.predict`'s
``receive``); before, every abandoned ticket was predicted, ahead of those of live clients.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.types import Receive

from model.router import Router, RouteResult

logger = logging.getLogger(__name__)

MAX_BATCH = 64  # tickets per predict call; bounds the latency one call adds to the next
FILL_WAIT_S = 0.002  # the longest a call waits for the previous call's clients to come back
# A call counts as "the previous one" for FILL_WAIT_S if it ended less than this long ago: after a
# pause, the next request is served at once.
UNDER_LOAD_S = 0.1


@dataclass
class _Pending:
    router: Router
    ticket: tuple[str, str]
    top_k: int
    future: asyncio.Future[RouteResult]
    masked: bool = False


class ClientLeft(Exception):
    """The client closed its connection before its ticket was answered."""


class MicroBatcher:
    """Queues single-ticket predictions and runs them together, one call at a time per process."""

    def __init__(self, similar_k: int, max_batch: int = MAX_BATCH, snippets: bool = True) -> None:
        self.similar_k = similar_k
        self.snippets = snippets  # PAIDAN_SIMILAR_SNIPPETS
        self.max_batch = max_batch
        self._pending: list[_Pending] = []
        self._task: asyncio.Task[None] | None = None
        self._filled: asyncio.Future[None] | None = None  # resolved when _fill_target are pending
        self._fill_target = 0
        self._last_size = 0  # tickets in the last call, and when it ended (the loop's clock)
        self._last_end = 0.0

    async def predict(
        self,
        router: Router,
        ticket: tuple[str, str],
        top_k: int,
        receive: Receive | None = None,
        masked: bool = False,
    ) -> RouteResult:
        """The suggestion for one ticket, computed in a batch with whatever else is waiting.

        ``receive`` is the request's ASGI ``receive``, its body already read: the next message it
        gives is ``http.disconnect`` once the client has gone, and then the ticket is dropped (if
        no call has taken it yet) and :class:`ClientLeft` raised. ``masked``: the result carries
        the ticket as read (:meth:`Router.predict`).
        """
        future: asyncio.Future[RouteResult] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(router, ticket, top_k, future, masked))
        if self._filled is not None and len(self._pending) >= self._fill_target:
            _resolve(self._filled)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        if receive is None:
            return await future
        watcher = asyncio.ensure_future(_client_left(receive))
        watcher.add_done_callback(lambda w: _cancel_if_left(w, future))
        try:
            return await future
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if _left(watcher) and (task is None or not task.cancelling()):
                raise ClientLeft from None
            raise
        finally:
            watcher.cancel()

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            if (
                self._last_size > 1
                and len(self._pending) < self._last_size
                and loop.time() - self._last_end < UNDER_LOAD_S
            ):
                await self._fill(self._last_size)
            # One router per call (tests may swap the router between requests).
            router = self._pending[0].router
            batch = [p for p in self._pending if p.router is router][: self.max_batch]
            taken = {id(p) for p in batch}
            self._pending = [p for p in self._pending if id(p) not in taken]
            live = [p for p in batch if not p.future.done()]  # skip clients that went away
            if not live:
                continue
            try:
                results = await run_in_threadpool(self._run, router, live)
            except BaseException as e:  # never leave a waiter hanging
                for p in live:
                    if not p.future.done():
                        p.future.set_exception(e if isinstance(e, Exception) else RuntimeError())
                if not isinstance(e, Exception):
                    raise
                continue
            finally:
                self._last_size, self._last_end = len(live), loop.time()
            for p, result in zip(live, results, strict=True):
                if p.future.done():
                    continue
                if isinstance(result, Exception):
                    p.future.set_exception(result)
                else:
                    p.future.set_result(trim(result, p.top_k))

    async def _fill(self, target: int) -> None:
        """Wait until ``target`` tickets are pending, or :data:`FILL_WAIT_S` has passed."""
        loop = asyncio.get_running_loop()
        self._filled, self._fill_target = loop.create_future(), target
        timer = loop.call_later(FILL_WAIT_S, _resolve, self._filled)
        try:
            await self._filled
        finally:
            timer.cancel()
            self._filled = None

    def _run(self, router: Router, batch: list[_Pending]) -> list[RouteResult | Exception]:
        tickets = [p.ticket for p in batch]
        top_k = max(p.top_k for p in batch)
        # For every ticket of the call when one asks: the texts are cleaned anyway.
        masked = any(p.masked for p in batch)
        try:
            return list(
                router.predict(
                    tickets,
                    top_k=top_k,
                    similar_k=self.similar_k,
                    masked=masked,
                    snippets=self.snippets,
                )
            )
        except Exception:
            if len(batch) == 1:
                raise
        # One ticket broke the vectorised call: isolate it so the others still get their answer.
        out: list[RouteResult | Exception] = []
        for ticket in tickets:
            try:
                [result] = router.predict(
                    [ticket],
                    top_k=top_k,
                    similar_k=self.similar_k,
                    masked=masked,
                    snippets=self.snippets,
                )
                out.append(result)
            except Exception as e:
                out.append(e)
        return out


async def _client_left(receive: Receive) -> bool:
    """Whether the next message of a request whose body was read says its client has gone.

    Servers send none until then (uvicorn sends ``http.disconnect`` when the connection closes).
    """
    return (await receive())["type"] == "http.disconnect"


def _left(watcher: asyncio.Future[bool]) -> bool:
    return (
        watcher.done()
        and not watcher.cancelled()
        and watcher.exception() is None
        and watcher.result()
    )


def _cancel_if_left(watcher: asyncio.Future[bool], future: asyncio.Future[RouteResult]) -> None:
    # Cancelled, the ticket is skipped by the calls that have not yet taken it (see _drain), and
    # an answer computed already is not set.
    if _left(watcher):
        future.cancel()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def trim(result: RouteResult, top_k: int) -> RouteResult:
    """Keep ``top_k`` candidates per head (the batch was predicted with the largest ``top_k``)."""
    updates = {}
    for name in ("department", "category"):
        head = getattr(result, name)
        if head is not None and len(head.candidates) > top_k:
            updates[name] = head.model_copy(update={"candidates": head.candidates[:top_k]})
    return result.model_copy(update=updates) if updates else result
