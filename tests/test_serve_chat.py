"""serve's Chat mode: the /api/chat endpoint, and the Generate tab's chat in headless Chromium."""

import json
import threading
import urllib.error
import urllib.parse
import urllib.request

import pytest

from minilab.app.serve import MAX_CHAT_CHARS, Lab, make_server
from minilab.checkpoint import load_model
from minilab.generation.chat import ChatSession
from tests.test_finetune import FAST, cli_in, write_task
from tests.test_serve_browser import browser_context, page, screenshot  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory):
    """checkpoints/base (plain text, no chat tokens) and checkpoints/chat (fine-tuned on conversations)."""
    d = tmp_path_factory.mktemp("chat_lab")
    write_task(d)
    tiny = ["--preset", "tiny", "--epochs", "1", *FAST]
    assert (
        cli_in(d, ["train", "--data", "pretrain.txt", *tiny, "--out_dir", "checkpoints/base", "--run_name", "b"]) == 0
    )
    ft = ["--epochs", "1", *FAST, "--out_dir", "checkpoints/chat", "--run_name", "c"]
    assert cli_in(d, ["finetune", "--from", "checkpoints/base/best_model.pt", "--data", "train.jsonl", *ft]) == 0
    return d


@pytest.fixture(scope="module")
def url(lab_dir):
    server = make_server(Lab(lab_dir / "experiments", lab_dir / "checkpoints"), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def greedy_answers(lab_dir, messages: list[str]) -> list[str]:
    model, tokenizer, _ = load_model(lab_dir / "checkpoints" / "chat" / "best_model.pt")
    session = ChatSession(model, tokenizer, max_new_tokens=8, temperature=0.0)
    return ["".join(session.reply(m)) for m in messages]


def chat_events(url: str, **params) -> tuple[int, str]:
    query = urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(f"{url}api/chat?{query}", timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())["error"]


def test_chat_endpoint_answers_the_conversation_and_refuses_bad_ones(url, lab_dir):
    messages = [{"role": "user", "content": "3 + 4"}]
    status, body = chat_events(
        url, checkpoint="chat/best_model.pt", messages=json.dumps(messages), temperature=0, max_new_tokens=8
    )
    assert status == 200 and "event: done" in body
    pieces = [json.loads(line[6:])["text"] for line in body.splitlines() if line.startswith('data: {"text"')]
    assert "".join(pieces) == greedy_answers(lab_dir, ["3 + 4"])[0]
    bad = [
        ({"messages": "not json"}, "messages must be a JSON list"),
        ({"messages": json.dumps([{"role": "bot", "content": "1"}])}, "unknown role 'bot'"),
        ({"messages": json.dumps([{"role": "assistant", "content": "1"}])}, "the last message must be the user's"),
    ]
    for params, message in bad:
        status, error = chat_events(url, checkpoint="chat/best_model.pt", **params)
        assert status == 400 and message in error
    status, error = chat_events(url, checkpoint="base/best_model.pt", messages=json.dumps(messages))
    assert status == 400 and "no chat tokens" in error
    unseen = json.dumps([{"role": "user", "content": "what is 3 + 4?"}])
    status, error = chat_events(url, checkpoint="chat/best_model.pt", messages=unseen)
    assert status == 400 and "not in the model's vocabulary" in error
    history = [{"role": "user", "content": "1 + 1"}, {"role": "assistant", "content": "2" * MAX_CHAT_CHARS}]
    long = json.dumps(history + messages)
    status, error = chat_events(url, checkpoint="chat/best_model.pt", messages=long)
    assert status == 400 and f"longer than {MAX_CHAT_CHARS} characters" in error


def test_generate_tab_chat_mode_keeps_the_conversation(page, lab_dir, tmp_path):  # noqa: F811
    page.click("button[data-tab=generate]")
    page.wait_for_selector("#gen-form select option", state="attached")
    page.select_option("#gen-form select[name=checkpoint]", "chat/best_model.pt")
    page.select_option("#gen-mode", "chat")
    assert page.inner_text("#gen-go") == "Send" and page.is_visible("#chat-reset")
    page.fill("#gen-form input[name=temperature]", "0")
    page.fill("#gen-max", "8")
    want = greedy_answers(lab_dir, ["3 + 4", "2 + 2"])
    for i, message in enumerate(["3 + 4", "2 + 2"]):
        page.fill("#gen-prompt", message)
        page.click("#gen-go")
        page.wait_for_function(f"document.querySelectorAll('#chat-log .turn').length === {2 * (i + 1)}")
        page.wait_for_function("!document.querySelector('#gen-go').disabled")
    turns = page.locator("#chat-log .turn span").all_inner_texts()
    assert turns[0::2] == ["3 + 4", "2 + 2"]
    assert [t.strip() for t in turns[1::2]] == [w.strip() for w in want]  # the second answer saw the first turn
    assert page.inner_text("#gen-error") == ""
    screenshot(page, tmp_path, "chat.png")
    page.click("#chat-reset")
    assert page.locator("#chat-log .turn").count() == 0
    page.select_option("#gen-form select[name=checkpoint]", "base/best_model.pt")
    page.fill("#gen-prompt", "3 + 4")
    page.click("#gen-go")
    page.wait_for_function("document.querySelector('#gen-error').textContent.includes('no chat tokens')")
