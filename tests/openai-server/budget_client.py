"""The official `openai` client streaming from a model that ignores its limit, through moat
with a token budget: prints the tokens it received and the error the SDK raised when moat
ended the stream, as one JSON object. Usage: budget_client.py BASE_URL KEY"""

import json
import sys

import openai

base, key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
received, error = [], None
try:
    stream = client.chat.completions.create(
        model="runaway", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            received.append(chunk.choices[0].delta.content)
except openai.APIError as raised:
    error = {"type": type(raised).__name__, "message": raised.message, "code": raised.code}
try:
    client.chat.completions.create(model="runaway", messages=[{"role": "user", "content": "hi"}])
    after = "accepted"
except openai.RateLimitError as raised:
    after = raised.status_code
print(json.dumps({"received": len(received), "error": error, "after": after}))
