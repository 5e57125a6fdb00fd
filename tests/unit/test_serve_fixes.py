"""Stop sequences the serve ignores, enforced on whole and streamed completions."""

from __future__ import annotations

import json

import httpx

from qvac_managed_core.serve_fixes import StopCutter, cut_completion, fix_response


def test_stop_spanning_pieces_is_found_and_nothing_after_it_is_emitted() -> None:
    cutter = StopCutter(["<END>"])
    pieces = ["Hello wor", "ld <E", "N", "D> and more", " text"]
    out = "".join(cutter.feed(p) for p in pieces) + cutter.flush()
    assert out == "Hello world "
    assert cutter.stopped


def test_a_held_back_prefix_that_is_not_a_stop_is_released() -> None:
    cutter = StopCutter(["<END>"])
    out = cutter.feed("a <E") + cutter.feed("xit") + cutter.flush()
    assert out == "a <Exit" and not cutter.stopped


def test_earliest_of_several_stops_wins() -> None:
    payload = {"choices": [{"message": {"content": "one. two\nthree"}, "finish_reason": "length"}]}
    cut = cut_completion(payload, ["\n", "."])
    assert cut["choices"][0]["message"]["content"] == "one"
    assert cut["choices"][0]["finish_reason"] == "stop"


def sse(*chunks: dict[str, object]) -> bytes:
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + (
        b"data: [DONE]\n\n"
    )


def delta(text: str) -> dict[str, object]:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


def test_stream_ends_at_the_stop_with_finish_reason_stop() -> None:
    body = sse(delta("Count: 1,"), delta(" 2, 3"), delta(" STOP here"), delta(" never"))
    request = httpx.Request(
        "POST", "http://127.0.0.1:1/v1/chat/completions",
        json={"model": "m", "stream": True, "stop": ["STOP"], "messages": []},
    )  # fmt: skip
    upstream = httpx.Response(
        200, stream=httpx.ByteStream(body), headers={"content-type": "text/event-stream"}
    )  # as a transport returns it: not yet read
    fixed = fix_response(request, upstream)
    events = [e for e in fixed.read().decode().split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "Count: 1, 2, 3 "
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_requests_without_stop_pass_through_untouched() -> None:
    request = httpx.Request(
        "POST", "http://127.0.0.1:1/v1/chat/completions", json={"model": "m", "messages": []}
    )
    upstream = httpx.Response(200, json={"choices": [{"message": {"content": "x STOP"}}]})
    assert fix_response(request, upstream) is upstream
