"""The official `openai` client, configured as its users do (base_url and api_key), against
moat: prints what it got as one JSON object. Usage: client.py BASE_URL KEY"""

import json
import sys

import openai

base, key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
models = client.models.list()
reply = client.chat.completions.create(
    model="llama-3.1-8b", messages=[{"role": "user", "content": "hi"}]
)
stream = client.chat.completions.create(
    model="llama-3.1-8b", messages=[{"role": "user", "content": "hi"}], stream=True
)
streamed = [c.choices[0].delta.content or "" for c in stream if c.choices]
try:
    openai.OpenAI(base_url=f"{base}/v1", api_key="moat_nobody_wrong", max_retries=0).models.list()
    wrong = "accepted"
except openai.AuthenticationError as error:
    wrong = error.status_code
print(
    json.dumps(
        {
            "models": [m.id for m in models.data],
            "owned_by": models.data[0].owned_by,
            "reply": reply.choices[0].message.content,
            "fingerprint": reply.system_fingerprint,
            "streamed": streamed,
            "wrong_key": wrong,
        }
    )
)
