"""Drives the official OpenAI and Anthropic Python SDKs against the scripted model server.

Run by tests/sdk.rs with SCRIPTED_URL set; prints one JSON object with what each SDK parsed, for the
Rust test to compare with the script. Each call below consumes the next turn of the script, in order.
"""

import json
import os
import sys

import anthropic
import openai

URL = os.environ["SCRIPTED_URL"]
TOOLS_OPENAI_RESPONSES = [
    {
        "type": "function",
        "name": "read_file",
        "description": "Read a file",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
    }
]
TOOLS_OPENAI_CHAT = [{"type": "function", "function": {k: v for k, v in TOOLS_OPENAI_RESPONSES[0].items() if k != "type"}}]
TOOLS_ANTHROPIC = [
    {
        "name": "read_file",
        "description": "Read a file",
        "input_schema": TOOLS_OPENAI_RESPONSES[0]["parameters"],
    }
]


def responses(client):
    out = {}
    # Streaming text, through the SDK's own event accumulator.
    with client.responses.stream(model="gpt-5", input="Say hello", tools=TOOLS_OPENAI_RESPONSES) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    out["text_deltas"] = len(deltas)
    out["text"] = final.output_text
    out["usage"] = [final.usage.input_tokens, final.usage.input_tokens_details.cached_tokens, final.usage.output_tokens]
    # Streaming tool call.
    with client.responses.stream(model="gpt-5", input="Read the parser", tools=TOOLS_OPENAI_RESPONSES) as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    calls = [item for item in final.output if item.type == "function_call"]
    out["calls"] = [[c.call_id, c.name, json.loads(c.arguments)] for c in calls]
    # Not streaming.
    whole = client.responses.create(model="gpt-5", input="Once more, whole")
    out["whole_text"] = whole.output_text
    return out


def chat(client):
    out = {}
    stream = client.chat.completions.create(
        model="qwen3-coder",
        messages=[{"role": "user", "content": "Say hello"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = "", None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage:
            usage = [chunk.usage.prompt_tokens, chunk.usage.prompt_tokens_details.cached_tokens, chunk.usage.completion_tokens]
    out["text"], out["usage"] = text, usage
    stream = client.chat.completions.create(
        model="qwen3-coder",
        messages=[{"role": "user", "content": "Read the parser"}],
        tools=TOOLS_OPENAI_CHAT,
        stream=True,
    )
    calls, finish = {}, None
    for chunk in stream:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for call in choice.delta.tool_calls or []:
            entry = calls.setdefault(call.index, {"id": None, "name": "", "arguments": ""})
            entry["id"] = call.id or entry["id"]
            if call.function and call.function.name:
                entry["name"] = call.function.name
            if call.function and call.function.arguments:
                entry["arguments"] += call.function.arguments
    out["calls"] = [[c["id"], c["name"], json.loads(c["arguments"])] for _, c in sorted(calls.items())]
    out["finish"] = finish
    whole = client.chat.completions.create(model="qwen3-coder", messages=[{"role": "user", "content": "Whole"}])
    out["whole_text"] = whole.choices[0].message.content
    return out


def messages(client):
    out = {}
    with client.messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=1024,
        messages=[{"role": "user", "content": "Say hello"}],
        thinking={"type": "enabled", "budget_tokens": 1024},
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    out["text"] = text
    out["thinking"] = [[b.thinking, b.signature] for b in final.content if b.type == "thinking"]
    out["usage"] = [final.usage.input_tokens, final.usage.cache_read_input_tokens, final.usage.cache_creation_input_tokens, final.usage.output_tokens]
    with client.messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=1024,
        messages=[{"role": "user", "content": "Read the parser"}],
        tools=TOOLS_ANTHROPIC,
    ) as stream:
        final = stream.get_final_message()
    out["calls"] = [[b.id, b.name, b.input] for b in final.content if b.type == "tool_use"]
    out["stop_reason"] = final.stop_reason
    whole = client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=[{"role": "user", "content": "Whole"}])
    out["whole_text"] = whole.content[0].text
    return out


def main():
    results = {
        "versions": {"openai": openai.__version__, "anthropic": anthropic.__version__},
        "responses": responses(openai.OpenAI(base_url=URL + "/v1", api_key="sk-test", max_retries=0)),
        "chat": chat(openai.OpenAI(base_url=URL + "/v1", api_key="sk-test", max_retries=0)),
        "messages": messages(anthropic.Anthropic(base_url=URL, api_key="sk-test", max_retries=0)),
    }
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
