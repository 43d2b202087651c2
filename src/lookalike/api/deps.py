"""What every route module shares: the request's use-case context, the thread-pool helper, the static folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from lookalike.usecases.context import Context

T = TypeVar("T")
STATIC = Path(__file__).parent / "static"


async def blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking work (inference, Milvus calls, file reads) off the event loop."""
    return await run_in_threadpool(fn, *args, **kwargs)


def context_of(request: Request) -> Context:
    ctx: Context = request.app.state.context
    return ctx
