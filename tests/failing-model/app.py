"""A FastAPI model server that misbehaves the ways real ones do, for tests/responses.rs:
an error handler that puts the traceback in the body (as `debug=True` or a hand-written
handler does), a status its spec does not declare, HTML where it declares JSON, a number
where it declares a string, a streamed chat completion with an event its spec does not
declare.

Run:  uvicorn app:app --host 127.0.0.1 --port 8000
"""
from __future__ import annotations

import asyncio
import json
import traceback

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel

app = FastAPI(title="failing model", version="1")


class Prediction(BaseModel):
    label: str


@app.exception_handler(RuntimeError)
async def traceback_in_body(request: Request, error: RuntimeError) -> PlainTextResponse:
    return PlainTextResponse(traceback.format_exc(), status_code=500)


@app.get("/v1/predict", response_model=Prediction)
def predict() -> Prediction:
    return Prediction(label="setosa")


@app.get("/v1/crash", response_model=Prediction)
def crash() -> Prediction:
    raise RuntimeError("cannot open /srv/model/weights.bin with password=hunter2")


@app.get("/v1/teapot", response_model=Prediction)
def teapot() -> JSONResponse:
    return JSONResponse({"label": "teapot"}, status_code=418)


@app.get("/v1/wrong-type", response_model=Prediction)
def wrong_type() -> JSONResponse:
    # A JSONResponse bypasses FastAPI's own response_model check, as handlers that build
    # their answers by hand do.
    return JSONResponse({"label": 5})


@app.get("/v1/extra", response_model=Prediction)
def extra() -> JSONResponse:
    # More than the contract says: an internal id and a credential beside the label.
    return JSONResponse({"label": "setosa", "internal_id": 42, "upstream_token": "sk-live-123"})


@app.get("/v1/big", response_model=Prediction)
def big() -> Prediction:
    # 5 MiB: past moat's default responses.max_body_bytes (1 MiB).
    return Prediction(label="x" * (5 * 1024 * 1024))


@app.get("/v1/large", response_model=Prediction)
async def large() -> StreamingResponse:
    # 900 KiB with its Content-Length, within moat's default responses.max_body_bytes (so
    # read whole and checked), written in 100 KiB pieces over half a second as a model
    # serialising a large answer does: many such answers are in flight at once.
    head, tail = b'{"label":"', b'"}'
    size = 900 * 1024

    async def pieces():
        yield head
        for _ in range(9):
            await asyncio.sleep(0.05)
            yield b"x" * (size // 9)
        yield b"x" * (size % 9) + tail

    length = str(len(head) + size + len(tail))
    return StreamingResponse(pieces(), media_type="application/json", headers={"content-length": length})


@app.get("/v1/html", response_model=Prediction)
def html() -> HTMLResponse:
    return HTMLResponse("<p>setosa</p>")


class Message(BaseModel):
    role: str
    content: str


class Chat(BaseModel):
    model: str
    messages: list[Message]
    stream: bool = False
    max_tokens: int | None = None


# Each streamed event's JSON `data`, as the spec declares it to moat (`x-moat-event-schema`).
CHUNK = {
    "type": "object",
    "required": ["object", "choices"],
    "properties": {
        "object": {"const": "chat.completion.chunk"},
        "choices": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"delta": {"type": "object", "properties": {"content": {"type": "string"}}}},
            },
        },
    },
}


@app.post(
    "/v1/chat/completions",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"x-moat-event-schema": CHUNK}}}},
)
async def chat(chat: Chat) -> StreamingResponse:
    # One chunk per character, as llama.cpp streams; model `bad-event` sends, after
    # "hello", a chunk whose `choices` is a string — then goes on as if nothing happened.
    def chunk(choices) -> str:
        return "data: " + json.dumps({"object": "chat.completion.chunk", "choices": choices}) + "\n\n"

    async def events():
        for index, character in enumerate("hello world"):
            if chat.model == "bad-event" and index == 5:
                yield chunk("oops")
            yield chunk([{"index": 0, "delta": {"content": character}}])
            await asyncio.sleep(0.01)
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")
