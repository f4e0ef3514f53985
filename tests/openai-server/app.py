"""An OpenAI-compatible server as FastAPI writes one (llama.cpp's server, vLLM): every
operation behind `HTTPBearer`, `/v1/models` and `/v1/chat/completions` with JSON and SSE
answers shaped as vLLM's. It checks no key itself: moat does. Each answer says whether an
`Authorization` header reached it, so a test can prove moat stripped the key."""

import json
import time

from fastapi import Depends, FastAPI, Request
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

bearer = HTTPBearer(auto_error=False)
app = FastAPI(title="openai-compatible test server", version="1")
MODEL = "llama-3.1-8b"


class Message(BaseModel):
    role: str
    content: str


class ChatRequest(BaseModel):
    model: str
    messages: list[Message]
    stream: bool = False
    max_tokens: int | None = None


def seen(request: Request) -> str:
    return "authorization-seen" if "authorization" in request.headers else "no-authorization"


@app.get("/v1/models")
def list_models(request: Request, _: HTTPAuthorizationCredentials | None = Depends(bearer)):
    return {
        "object": "list",
        "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": seen(request)}],
    }


@app.post("/v1/chat/completions")
def chat_completions(
    body: ChatRequest, request: Request, _: HTTPAuthorizationCredentials | None = Depends(bearer)
):
    words = ["hello", " from", " the", " model"]
    created = int(time.time())
    if not body.stream:
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": created,
            "model": body.model,
            "system_fingerprint": seen(request),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(words)},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        }

    def events():
        for i, word in enumerate(words):
            delta = {"role": "assistant", "content": word} if i == 0 else {"content": word}
            chunk = {
                "id": "chatcmpl-2",
                "object": "chat.completion.chunk",
                "created": created,
                "model": body.model,
                "system_fingerprint": seen(request),
                "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
            }
            yield f"data: {json.dumps(chunk)}\n\n"
        last = {
            "id": "chatcmpl-2",
            "object": "chat.completion.chunk",
            "created": created,
            "model": body.model,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
        yield f"data: {json.dumps(last)}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")
