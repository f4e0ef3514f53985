"""An OpenAI-compatible server as FastAPI writes one (llama.cpp's server, vLLM): every
operation behind `HTTPBearer`; `/v1/models`, `/v1/chat/completions`, `/v1/completions` and
`/v1/embeddings` with JSON and SSE answers shaped as vLLM's (a first chunk with the role and
empty content, one token per chunk, a last chunk with `finish_reason`, the usage chunk with
`choices: []` when `stream_options.include_usage` asks for it, `data: [DONE]`).

It checks no key itself: moat does. Each answer says whether an `Authorization` header
reached it, so a test can prove moat stripped the key. Generation is deterministic:
- model `llama-3.1-8b`: "hello from the model", 4 tokens (fewer if `max_tokens` says so);
- model `counter`: exactly `max_tokens` tokens (16 without one);
- model `runaway`: 1000 tokens whatever `max_tokens` says, 5 ms apart, as a model that
  ignores its limit — what moat must cut.
`usage.prompt_tokens` is the number of words in the prompt. `GET /_test/log` (not in the
spec) tells what it received and which streams were cancelled by their client."""

import asyncio
import json
import time

from fastapi import Depends, FastAPI, Request
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

bearer = HTTPBearer(auto_error=False)
app = FastAPI(title="openai-compatible test server", version="1")
MODEL = "llama-3.1-8b"
LOG = {"requests": [], "cancelled": 0, "completed": 0}


class Message(BaseModel):
    role: str
    content: str


class StreamOptions(BaseModel):
    include_usage: bool | None = None


class Generation(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    stream: bool = False
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    n: int = 1
    temperature: float | None = Field(default=None, ge=0, le=2)
    stream_options: StreamOptions | None = None


class ChatRequest(Generation):
    messages: list[Message]


class CompletionRequest(Generation):
    prompt: str


class EmbeddingRequest(BaseModel):
    model: str
    input: str | list[str]


def seen(request: Request) -> str:
    return "authorization-seen" if "authorization" in request.headers else "no-authorization"


def tokens_for(body: Generation) -> list[str]:
    limit = body.max_completion_tokens or body.max_tokens
    if body.model == "runaway":
        return [f" t{i}" for i in range(1000)]
    if body.model == "counter":
        return [f" t{i}" for i in range(limit or 16)]
    words = ["hello", " from", " the", " model"]
    return words[:limit] if limit else words


def usage(prompt: int, completion: int) -> dict:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


@app.get("/_test/log", include_in_schema=False)
def test_log():
    return LOG


@app.get("/v1/models")
def list_models(request: Request, _: HTTPAuthorizationCredentials | None = Depends(bearer)):
    return {
        "object": "list",
        "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": seen(request)}],
    }


def generate(body: Generation, request: Request, prompt: int, chat: bool):
    LOG["requests"].append(body.model_dump(exclude_unset=True))
    tokens = tokens_for(body)
    created = int(time.time())
    kind = "chat.completion" if chat else "text_completion"
    if not body.stream:
        choices = []
        for index in range(body.n):
            if chat:
                content = {"message": {"role": "assistant", "content": "".join(tokens)}}
            else:
                content = {"text": "".join(tokens)}
            choices.append({"index": index, **content, "finish_reason": "stop"})
        LOG["completed"] += 1
        return {
            "id": "cmpl-1",
            "object": kind,
            "created": created,
            "model": body.model,
            "system_fingerprint": seen(request),
            "choices": choices,
            "usage": usage(prompt, len(tokens) * body.n),
        }

    def chunk(choices, **extra):
        event = {
            "id": "cmpl-2",
            "object": f"{kind}.chunk" if chat else kind,
            "created": created,
            "model": body.model,
            "system_fingerprint": seen(request),
            "choices": choices,
            **extra,
        }
        return f"data: {json.dumps(event)}\n\n"

    def piece(index, text, finish=None):
        if chat:
            delta = {"content": text} if text is not None else {}
            return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {"index": index, "text": text or "", "logprobs": None, "finish_reason": finish}

    async def events():
        finished = False
        try:
            if chat:
                first = [
                    {"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                     "finish_reason": None}
                    for i in range(body.n)
                ]
                yield chunk(first)
            for token in tokens:
                if body.model == "runaway":
                    await asyncio.sleep(0.005)
                yield chunk([piece(i, token) for i in range(body.n)])
            yield chunk([piece(i, None, "stop") for i in range(body.n)])
            if body.stream_options and body.stream_options.include_usage:
                yield chunk([], usage=usage(prompt, len(tokens) * body.n))
            yield "data: [DONE]\n\n"
            finished = True
        finally:
            if finished:
                LOG["completed"] += 1
            else:
                LOG["cancelled"] += 1

    return StreamingResponse(events(), media_type="text/event-stream")


@app.post("/v1/chat/completions")
def chat_completions(
    body: ChatRequest, request: Request, _: HTTPAuthorizationCredentials | None = Depends(bearer)
):
    prompt = sum(len(m.content.split()) for m in body.messages)
    return generate(body, request, prompt, chat=True)


@app.post("/v1/completions")
def completions(
    body: CompletionRequest,
    request: Request,
    _: HTTPAuthorizationCredentials | None = Depends(bearer),
):
    return generate(body, request, len(body.prompt.split()), chat=False)


@app.post("/v1/embeddings")
def embeddings(
    body: EmbeddingRequest,
    request: Request,
    _: HTTPAuthorizationCredentials | None = Depends(bearer),
):
    texts = [body.input] if isinstance(body.input, str) else body.input
    LOG["requests"].append(body.model_dump())
    LOG["completed"] += 1
    words = sum(len(t.split()) for t in texts)
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": [0.0, 1.0]}
                 for i in range(len(texts))],
        "model": body.model,
        "usage": {"prompt_tokens": words, "total_tokens": words},
    }
