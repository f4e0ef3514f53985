"""A hostile caller with the official `openai` client, against moat in front of the
llama.cpp-like server (`app.py`): each way of getting more tokens than the key allows, and
what it got. Prints one JSON object. Usage: hostile_client.py BASE_URL CAPPED_KEY CJK_KEY
EMOJI_KEY DEAF_KEY

CAPPED_KEY has `max_tokens: 16` and nothing else; CJK_KEY and EMOJI_KEY a budget of 300
tokens a day and no cap; DEAF_KEY a budget of 200 and a cap of 16."""

import json
import sys

import openai

base, capped, cjk, emoji, deaf = sys.argv[1:6]
MESSAGES = [{"role": "user", "content": "Tell me a long story."}]


def client(key):
    return openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)


def refusal(call):
    """The status and moat's code of a refused call, or what it got when accepted."""
    try:
        reply = call()
    except openai.APIStatusError as error:
        body = error.body if isinstance(error.body, dict) else {}
        return {"status": error.status_code, "code": body.get("code")}
    return {"status": 200, "completion_tokens": reply.usage.completion_tokens}


def streamed(key, model, **extra):
    """Tokens a stream delivered (a chunk is one token: content "" included), and the
    error moat ended it with."""
    tokens, error = 0, None
    try:
        stream = client(key).chat.completions.create(
            model=model, messages=MESSAGES, stream=True, **extra)
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content is not None:
                tokens += 1
    except openai.RateLimitError:
        return tokens, "refused"
    except openai.APIError as raised:
        error = getattr(raised, "code", None) or type(raised).__name__
    return tokens, error


result = {}
chat = client(capped).chat.completions
result["zero_chat"] = refusal(lambda: chat.create(model="tiny", messages=MESSAGES, max_tokens=0))
result["zero_completion"] = refusal(
    lambda: client(capped).completions.create(model="tiny", prompt="Once", max_tokens=0))
result["max_completion_tokens"] = refusal(
    lambda: chat.create(model="tiny", messages=MESSAGES, max_completion_tokens=8))
result["no_max_tokens"] = refusal(lambda: chat.create(model="tiny", messages=MESSAGES))
result["no_max_tokens_stream"] = streamed(capped, "tiny")[0]
result["over_cap"] = refusal(lambda: chat.create(model="tiny", messages=MESSAGES, max_tokens=17))

# Budgets of 300 spent by streams whose tokens are bytes of CJK characters and emoji: the
# streams go on until moat refuses one.
for name, key, model in (("cjk", cjk, "cjk"), ("emoji", emoji, "emoji")):
    total, streams = 0, 0
    while streams < 100:
        tokens, error = streamed(key, model)
        if error == "refused":
            break
        total, streams = total + tokens, streams + 1
    result[name] = {"tokens": total, "streams": streams}

# A server that ignores max_tokens: a JSON answer past the reservation is withheld; a
# stream is cut at the cap's reservation, and the next call is admitted.
result["deaf_json"] = refusal(lambda: client(deaf).chat.completions.create(
    model="deaf", messages=MESSAGES, max_tokens=16))
tokens, error = streamed(deaf, "deaf", max_tokens=16)
result["deaf_stream"] = {"tokens": tokens, "error": error}
result["after_cut"] = refusal(lambda: client(deaf).chat.completions.create(
    model="tiny", messages=MESSAGES, max_tokens=4))
print(json.dumps(result))
