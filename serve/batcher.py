"""Micro-batching: concurrent ``POST /v1/route`` calls share one vectorised ``Router.predict``.

A prediction has a large fixed cost (the feature pipeline, the calibrated heads, the
similar-ticket search), so 32 tickets in one call cost little more than a few alone. The first request
starts a prediction at once (no waiting window, so a lone request is not delayed); requests arriving
while it runs wait and go together in the next call. Prediction always runs in the threadpool, never
on the event loop. Results do not depend on the batch: every row is computed on its own.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from model.router import Router, RouteResult

logger = logging.getLogger(__name__)

MAX_BATCH = 64  # tickets per predict call; bounds the latency one call adds to the next


@dataclass
class _Pending:
    router: Router
    ticket: tuple[str, str]
    top_k: int
    future: asyncio.Future[RouteResult]


class MicroBatcher:
    """Queues single-ticket predictions and runs them together, one call at a time per process."""

    def __init__(self, similar_k: int, max_batch: int = MAX_BATCH) -> None:
        self.similar_k = similar_k
        self.max_batch = max_batch
        self._pending: list[_Pending] = []
        self._task: asyncio.Task[None] | None = None

    async def predict(self, router: Router, ticket: tuple[str, str], top_k: int) -> RouteResult:
        """The suggestion for one ticket, computed in a batch with whatever else is waiting."""
        future: asyncio.Future[RouteResult] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(router, ticket, top_k, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
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
            for p, result in zip(live, results, strict=True):
                if p.future.done():
                    continue
                if isinstance(result, Exception):
                    p.future.set_exception(result)
                else:
                    p.future.set_result(trim(result, p.top_k))

    def _run(self, router: Router, batch: list[_Pending]) -> list[RouteResult | Exception]:
        tickets = [p.ticket for p in batch]
        top_k = max(p.top_k for p in batch)
        try:
            return list(router.predict(tickets, top_k=top_k, similar_k=self.similar_k))
        except Exception:
            if len(batch) == 1:
                raise
        # One ticket broke the vectorised call: isolate it so the others still get their answer.
        out: list[RouteResult | Exception] = []
        for ticket in tickets:
            try:
                out.append(router.predict([ticket], top_k=top_k, similar_k=self.similar_k)[0])
            except Exception as e:
                out.append(e)
        return out


def trim(result: RouteResult, top_k: int) -> RouteResult:
    """Keep ``top_k`` candidates per head (the batch was predicted with the largest ``top_k``)."""
    updates = {}
    for name in ("department", "category"):
        head = getattr(result, name)
        if head is not None and len(head.candidates) > top_k:
            updates[name] = head.model_copy(update={"candidates": head.candidates[:top_k]})
    return result.model_copy(update=updates) if updates else result
