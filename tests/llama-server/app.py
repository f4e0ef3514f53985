"""An OpenAI-compatible server that behaves as llama.cpp's does (llama-cpp-python's
`llama_cpp.server`, FastAPI): what a hostile caller can get out of it is what moat must bound.

Like llama.cpp it
- reads only `max_tokens` (`max_completion_tokens`, `n_predict`, `stream_options` and other
  fields it does not know are ignored), and reads `max_tokens` <= 0, or none on a chat call,
  as "no limit": it generates until its context is full (`N_CTX` tokens);
- streams one chunk per token, and a token is one byte-level piece: an ASCII character is one
  token, a character outside ASCII one token per UTF-8 byte, and the tokens that do not yet
  complete a character arrive as chunks with empty content (`""`);
- sends no `usage` in a stream (it ignores `stream_options.include_usage`), and `usage`
  in a JSON answer;
- writes events with CRLF line ends (sse-starlette) and JSON with `\\uXXXX` escapes.

Beyond llama.cpp, a request body with a duplicate key is refused with 400 (moat must never
send one), and model `deaf` ignores `max_tokens` altogether, as a server that does not
honour the bound moat writes. `GET /_test/log` (not in the spec) tells what it received
(raw bodies), how many tokens it generated and which streams were cancelled."""

import asyncio
import json
import time

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

bearer = HTTPBearer(auto_error=False)
app = FastAPI(title="llama.cpp-like test server", version="1")
N_CTX = 1000
TEXTS = {
    "tiny": "Once upon a time a small model wrote one character at a time. ",
    "cjk": "模型服务器安全代理",
    "emoji": "🦙🔒🚀",
    "deaf": "This server does not read max_tokens at all. ",
}
LOG = {"bodies": [], "generated": 0, "cancelled": 0, "completed": 0}


@app.middleware("http")
async def refuse_duplicate_keys(request: Request, call_next):
    if request.method == "POST":
        raw = await request.body()
        LOG["bodies"].append(raw.decode("utf-8", "replace"))

        def pairs(items):
            names = [name for name, _ in items]
            if len(names) != len(set(names)):
                raise ValueError("duplicate key")
            return dict(items)

        try:
            json.loads(raw, object_pairs_hook=pairs)
        except ValueError as error:
            return JSONResponse({"error": {"message": str(error), "code": 400}}, status_code=400)
    return await call_next(request)


class Message(BaseModel):
    role: str
    content: str


class ChatRequest(BaseModel):
    model: str
    messages: list[Message]
    max_tokens: int | None = None
    stream: bool = False


class CompletionRequest(BaseModel):
    model: str
    prompt: str
    max_tokens: int | None = 16
    stream: bool = False


def tokens(model: str, max_tokens: int | None) -> list[str]:
    """The text of each token: a byte-level piece, "" until a character is complete."""
    limit = N_CTX if model == "deaf" or max_tokens is None or max_tokens <= 0 else max_tokens
    text = TEXTS.get(model, TEXTS["tiny"])
    pieces = []
    while len(pieces) < limit:
        for char in text:
            width = len(char.encode())
            pieces.extend([""] * (width - 1) + [char])
    return pieces[:limit]


def usage(prompt: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def answer(model: str, max_tokens: int | None, stream: bool, prompt: int, chat: bool):
    pieces = tokens(model, max_tokens)
    finish = "length" if len(pieces) >= (max_tokens or N_CTX) or model == "deaf" else "stop"
    created = int(time.time())
    if not stream:
        LOG["generated"] += len(pieces)
        LOG["completed"] += 1
        text = "".join(pieces)
        choice = ({"message": {"role": "assistant", "content": text}} if chat
                  else {"text": text, "logprobs": None})
        return {"id": "cmpl-1", "object": "chat.completion" if chat else "text_completion",
                "created": created, "model": model,
                "choices": [{"index": 0, **choice, "finish_reason": finish}],
                "usage": usage(prompt, len(pieces))}

    def event(choice):
        chunk = {"id": "cmpl-2", "object": "chat.completion.chunk" if chat else "text_completion",
                 "created": created, "model": model, "choices": [{"index": 0, **choice}]}
        return f"data: {json.dumps(chunk)}\r\n\r\n"

    async def events():
        finished = False
        try:
            if chat:
                yield event({"delta": {"role": "assistant"}, "logprobs": None,
                             "finish_reason": None})
            for piece in pieces:
                LOG["generated"] += 1
                if model == "deaf":
                    await asyncio.sleep(0.002)
                body = {"delta": {"content": piece}} if chat else {"text": piece}
                yield event({**body, "logprobs": None, "finish_reason": None})
            last = {"delta": {}} if chat else {"text": ""}
            yield event({**last, "logprobs": None, "finish_reason": finish})
            yield "data: [DONE]\r\n\r\n"
            finished = True
        finally:
            LOG["completed" if finished else "cancelled"] += 1

    return StreamingResponse(events(), media_type="text/event-stream")


@app.get("/_test/log", include_in_schema=False)
def test_log():
    return LOG


@app.get("/v1/models")
def models(_: HTTPAuthorizationCredentials | None = Depends(bearer)):
    return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "me"}
                                        for name in TEXTS]}


@app.post("/v1/chat/completions")
def chat_completions(body: ChatRequest,
                     _: HTTPAuthorizationCredentials | None = Depends(bearer)):
    prompt = sum(len(m.content) for m in body.messages)
    return answer(body.model, body.max_tokens, body.stream, prompt, chat=True)


@app.post("/v1/completions")
def completions(body: CompletionRequest,
                _: HTTPAuthorizationCredentials | None = Depends(bearer)):
    return answer(body.model, body.max_tokens, body.stream, len(body.prompt), chat=False)
