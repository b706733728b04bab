"""The real Anthropic SDK with its HTTP answered by a respx router.

The SDK sends through httpx2, which respx does not patch; `httpx2.alias_httpx()` would have to run
before anything imports httpx, which a shared test process cannot promise. So the router is mounted
on an `httpx2.MockTransport` passed to the SDK as its http client: the SDK's request building,
retries and error classes all run for real.
"""

from __future__ import annotations

import anthropic
import httpx2
import respx

__all__ = ["sdk_client"]


def sdk_client(router: respx.Router, *, max_retries: int) -> anthropic.AsyncAnthropic:
    async def handler(request: httpx2.Request) -> httpx2.Response:
        # respx reads only method, url, headers and content: an httpx2 request serves as one.
        response = await router.async_handler(request)  # type: ignore[arg-type]
        return httpx2.Response(
            response.status_code, headers=response.headers.multi_items(), content=response.content
        )

    return anthropic.AsyncAnthropic(
        api_key="sk-test",
        max_retries=max_retries,
        timeout=5.0,
        http_client=anthropic.DefaultAsyncHttpxClient(transport=httpx2.MockTransport(handler)),
    )
