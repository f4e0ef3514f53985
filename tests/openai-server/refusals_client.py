"""The official `openai` client, refused by moat four ways: prints, as one JSON object, the
exception class and the text the SDK shows (`str(error)`) for each. Usage:
refusals_client.py BASE_URL KEY — KEY may name only `llama-3.1-8b` and has a small budget."""

import json
import sys

import openai

base, key = sys.argv[1], sys.argv[2]
MESSAGES = [{"role": "user", "content": "hi"}]


def refused(call):
    try:
        call()
    except openai.APIStatusError as error:
        return {"type": type(error).__name__, "status": error.status_code, "text": str(error)}
    return {"type": "accepted"}


client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
wrong = openai.OpenAI(base_url=f"{base}/v1", api_key="moat_nobody_" + "A" * 43, max_retries=0)
chat = client.chat.completions.create
got = {
    "401": refused(lambda: wrong.chat.completions.create(model="llama-3.1-8b", messages=MESSAGES)),
    "403": refused(lambda: chat(model="mistral-7b", messages=MESSAGES)),
    "400": refused(lambda: chat(model="llama-3.1-8b", messages=MESSAGES, temperature=7)),
}
# More than the budget has left: the 429.
got["429"] = refused(lambda: chat(model="llama-3.1-8b", messages=MESSAGES, max_tokens=100))
print(json.dumps(got))
