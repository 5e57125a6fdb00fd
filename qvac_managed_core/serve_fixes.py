"""Where `qvac serve` (CLI 0.13) differs from what OpenAI clients expect, mended in one place.

Applied by the lease transports (and, in external mode, by `FixupTransport`) so every client built
on them, LangChain's and LlamaIndex's alike, gets the same behaviour:

- `stop` is ignored by the serve: the text is cut at the first stop sequence (`finish_reason`
  becomes "stop") and a stream ends there (its upstream is closed, so the model stops working).
- A request with tools to a model without `config.tools` gets HTTP 400 `tools_not_enabled`; its
  message is rewritten to name the option to set in this library.
- An embedding response whose row count differs from the inputs' (a model served without
  pooling returns one row per token) becomes HTTP 422 with a message naming the fix, so a wrong
  shape never reaches the user silently.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

TOOLS_HINT = (
    "Tool calling is off for model {model!r} on this qvac serve. In managed mode pass "
    "ManagedModel(name={model!r}, config={{'tools': True}}) in models=[...]; for an external "
    "serve set serve.models.{model}.config.tools to true in its qvac.config.json."
)
EMBEDDING_HINT = (
    "qvac serve returned {rows} embedding rows for {inputs} input(s): the embedding model "
    "{model!r} is served without pooling (one row per token). In managed mode pass "
    "ManagedModel(name={model!r}, config={{'pooling': 'mean'}}) (local files get it by "
    'default); for an external serve add "pooling": "mean" to '
    "serve.models.{model}.config in its qvac.config.json."
)


def request_json(request: httpx.Request) -> dict[str, Any] | None:
    """The JSON body of a POST, or None."""
    if request.method != "POST" or not request.content:
        return None
    try:
        body = json.loads(request.content)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def stop_sequences(body: dict[str, Any] | None) -> list[str]:
    if not body:
        return []
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    return [s for s in stop or [] if isinstance(s, str) and s]


def expected_rows(body: dict[str, Any]) -> int | None:
    """How many embeddings an /embeddings request asks for."""
    value = body.get("input")
    if isinstance(value, str):
        return 1
    if isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):
            return 1  # one text given as token ids
        return len(value)
    return None


def _replace_body(response: httpx.Response, status: int, payload: Any) -> httpx.Response:
    """A copy of `response` with a new JSON body (and no stale length or encoding headers)."""
    headers = httpx.Headers(response.headers)
    for name in ("content-length", "content-encoding", "transfer-encoding"):
        headers.pop(name, None)
    return httpx.Response(
        status,
        headers=headers,
        content=json.dumps(payload).encode(),
        extensions={k: v for k, v in response.extensions.items() if k != "network_stream"},
    )


class StopCutter:
    """Finds the first stop sequence in a text that arrives in pieces."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = stops
        self.held = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        """Text safe to emit now; after a stop sequence is seen, nothing more."""
        if self.stopped:
            return ""
        text = self.held + piece
        cut = min((i for i in (text.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self.held = ""
            return text[:cut]
        keep = max((len(s) - 1 for s in self.stops), default=0)
        # hold back a tail that could still be the start of a stop sequence
        hold = 0
        for n in range(min(keep, len(text)), 0, -1):
            if any(s.startswith(text[-n:]) for s in self.stops):
                hold = n
                break
        self.held = text[len(text) - hold :] if hold else ""
        return text[: len(text) - hold]

    def flush(self) -> str:
        rest, self.held = self.held, ""
        return "" if self.stopped else rest


def cut_completion(payload: dict[str, Any], stops: list[str]) -> dict[str, Any]:
    """Apply stop sequences to a non-streamed chat or text completion."""
    for choice in payload.get("choices") or []:
        holder, field = (
            (choice.get("message"), "content") if "message" in choice else (choice, "text")
        )
        if not isinstance(holder, dict) or not isinstance(holder.get(field), str):
            continue
        cutter = StopCutter(stops)
        kept = cutter.feed(holder[field])
        if cutter.stopped:
            holder[field] = kept
            choice["finish_reason"] = "stop"
    return payload


class _SSEStopper:
    """Rewrites an SSE completion stream so it ends at the first stop sequence."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = stops
        self.cutters: dict[int, StopCutter] = {}
        self.buffer = b""
        self.done = False

    def _event(self, chunk: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"

    def feed(self, data: bytes) -> list[bytes]:
        self.buffer += data
        out: list[bytes] = []
        while b"\n\n" in self.buffer and not self.done:
            raw, self.buffer = self.buffer.split(b"\n\n", 1)
            out.extend(self._handle(raw))
        return out

    def _handle(self, raw: bytes) -> list[bytes]:
        text = raw.decode("utf-8", errors="replace").strip()
        if not text.startswith("data:"):
            return [raw + b"\n\n"]
        data = text[5:].strip()
        if data == "[DONE]":
            self.done = True
            return [raw + b"\n\n"]
        try:
            chunk = json.loads(data)
        except ValueError:
            return [raw + b"\n\n"]
        stopped_now = False
        for choice in chunk.get("choices") or []:
            index = int(choice.get("index", 0))
            cutter = self.cutters.setdefault(index, StopCutter(self.stops))
            delta = choice.get("delta")
            holder, field = (delta, "content") if isinstance(delta, dict) else (choice, "text")
            piece = holder.get(field) if isinstance(holder, dict) else None
            if isinstance(piece, str):
                holder[field] = cutter.feed(piece)  # type: ignore[index]
                if cutter.stopped:
                    choice["finish_reason"] = "stop"
                    stopped_now = True
            if choice.get("finish_reason") and not cutter.stopped and isinstance(holder, dict):
                holder[field] = (holder.get(field) or "") + cutter.flush()
        if stopped_now:
            self.done = True
            return [self._event(chunk), b"data: [DONE]\n\n"]
        return [self._event(chunk)]


def _wants_fixes(request: httpx.Request) -> tuple[str, dict[str, Any]] | None:
    path = request.url.path
    if path.endswith("/chat/completions") or path.endswith("/completions"):
        kind = "completion"
    elif path.endswith("/embeddings"):
        kind = "embeddings"
    else:
        return None
    body = request_json(request)
    return (kind, body) if body is not None else None


def _plan(request: httpx.Request, response: httpx.Response) -> tuple[str, dict[str, Any]]:
    """What to do with a response: pass, explain (tools 400), check (rows), stream, or cut."""
    wanted = _wants_fixes(request)
    if wanted is None:
        return "pass", {}
    kind, body = wanted
    if response.status_code == 400:
        return "explain", body
    if response.status_code != 200:
        return "pass", body
    if kind == "embeddings":
        return "check", body
    if not stop_sequences(body):
        return "pass", body
    return ("stream" if body.get("stream") else "cut"), body


def _apply(action: str, body: dict[str, Any], response: httpx.Response) -> httpx.Response:
    """`_plan`'s action on a response whose body has been read."""
    if action == "explain":
        return _explain_tools_error(response, body)
    if action == "check":
        return _check_embeddings(response, body)
    return _replace_body(response, 200, cut_completion(response.json(), stop_sequences(body)))


def fix_response(request: httpx.Request, response: httpx.Response) -> httpx.Response:
    """Mend a sync response (see the module docstring); others pass through untouched."""
    action, body = _plan(request, response)
    if action == "pass":
        return response
    if action == "stream":
        return _stream_with_stops(response, stop_sequences(body))
    response.read()
    return _apply(action, body, response)


async def afix_response(request: httpx.Request, response: httpx.Response) -> httpx.Response:
    """The async twin of `fix_response`."""
    action, body = _plan(request, response)
    if action == "pass":
        return response
    if action == "stream":
        return _astream_with_stops(response, stop_sequences(body))
    await response.aread()
    return _apply(action, body, response)


def _explain_tools_error(response: httpx.Response, body: dict[str, Any]) -> httpx.Response:
    try:
        payload = response.json()
    except ValueError:
        return response
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict) or error.get("code") != "tools_not_enabled":
        return response
    error["message"] = TOOLS_HINT.format(model=str(body.get("model", "<alias>")))
    return _replace_body(response, 400, payload)


def _check_embeddings(response: httpx.Response, body: dict[str, Any]) -> httpx.Response:
    expected = expected_rows(body)
    try:
        rows = len(response.json().get("data") or [])
    except (ValueError, AttributeError):
        return response
    if expected is None or rows == expected:
        return response
    message = EMBEDDING_HINT.format(
        rows=rows, inputs=expected, model=str(body.get("model", "<alias>"))
    )
    error = {"message": message, "type": "invalid_response", "code": "qvac_embedding_shape"}
    return _replace_body(response, 422, {"error": error})


class _SyncStopStream(httpx.SyncByteStream):
    def __init__(self, response: httpx.Response, stops: list[str]) -> None:
        self.response = response
        self.stopper = _SSEStopper(stops)

    def __iter__(self) -> Iterator[bytes]:
        for data in self.response.iter_raw():
            yield from self.stopper.feed(data)
            if self.stopper.done:
                break
        if self.stopper.buffer and not self.stopper.done:
            yield self.stopper.buffer
        self.response.close()

    def close(self) -> None:
        self.response.close()


class _AsyncStopStream(httpx.AsyncByteStream):
    def __init__(self, response: httpx.Response, stops: list[str]) -> None:
        self.response = response
        self.stopper = _SSEStopper(stops)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for data in self.response.aiter_raw():
            for event in self.stopper.feed(data):
                yield event
            if self.stopper.done:
                break
        if self.stopper.buffer and not self.stopper.done:
            yield self.stopper.buffer
        await self.response.aclose()

    async def aclose(self) -> None:
        await self.response.aclose()


def _streamed_headers(response: httpx.Response) -> httpx.Headers:
    headers = httpx.Headers(response.headers)
    headers.pop("content-length", None)
    return headers


def _stream_with_stops(response: httpx.Response, stops: list[str]) -> httpx.Response:
    return httpx.Response(
        response.status_code,
        headers=_streamed_headers(response),
        stream=_SyncStopStream(response, stops),
        extensions=response.extensions,
    )


def _astream_with_stops(response: httpx.Response, stops: list[str]) -> httpx.Response:
    return httpx.Response(
        response.status_code,
        headers=_streamed_headers(response),
        stream=_AsyncStopStream(response, stops),
        extensions=response.extensions,
    )
