"""`zerohar describe` against a real OpenAI-compatible HTTP server on 127.0.0.1 (tests/llm_server.py)."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
from llm_server import LLMServer

from zerohar.cli import main
from zerohar.errors import ZeroharError
from zerohar.text.describe import (
    INSTRUCTION_VERSION,
    DescribeOptions,
    cached_descriptions,
    describe_labels,
)
from zerohar.text.labels import clean_labels, load_label_descriptions, read_label_file, read_labels_file

KEY = "sk-zerohar-test-Q7xWv93kLpT2rRz8mN4b"
FAST = DescribeOptions(timeout=5.0, retries=2, backoff=0.001, max_backoff=0.01, attempts=3, concurrency=2,
                       progress=False)
CLI_FAST = ["--retries", "2", "--backoff", "0.001", "--timeout", "5", "--no-progress"]


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    # A cache per test, so request counts do not depend on which tests ran before.
    monkeypatch.setenv("ZEROHAR_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)


@pytest.fixture
def server():
    with LLMServer(sleep_s=1.0) as s:
        yield s


def _opts(**kw) -> DescribeOptions:
    return DescribeOptions(**{**FAST.__dict__, **kw})


# ---------------------------------------------------------------------------------------------- the happy path
def test_normal_run_returns_n_validated_descriptions_per_label(server):
    out = describe_labels(["walking", "rock climbing"], "test-model", base_url=server.url, options=FAST)
    assert list(out) == ["walking", "rock climbing"]
    assert all(len(v) == 10 and len(set(v)) == 10 for v in out.values())
    assert out["rock climbing"][0] == "rock climbing: body movement number 1."
    assert sorted(server.labels_requested()) == ["rock climbing", "walking"]
    body = server.requests[0]["body"]
    assert body["model"] == "test-model"
    assert body["response_format"]["type"] == "json_schema"
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["descriptions"]["minItems"] == schema["properties"]["descriptions"]["maxItems"] == 10
    assert body["messages"][0]["role"] == "system" and "body motion only" in body["messages"][0]["content"]


def test_n_is_passed_to_the_schema_and_checked(server):
    out = describe_labels(["jumping"], "test-model", base_url=server.url, n=4, options=FAST)
    assert len(out["jumping"]) == 4
    assert server.requests[0]["body"]["response_format"]["json_schema"]["schema"]["properties"]["descriptions"][
        "maxItems"
    ] == 4


@pytest.mark.parametrize("first", ["429", "500", "timeout"])
def test_transient_failure_then_success_is_retried(server, first):
    server.script = [first]
    out = describe_labels(["walking"], "test-model", base_url=server.url, options=_opts(timeout=0.3))
    assert len(out["walking"]) == 10
    assert [r["behaviour"] for r in server.requests] == [first, "ok"]


@pytest.mark.parametrize(
    "bad, problem",
    [("malformed", "not valid JSON"), ("refusal", "refused"), ("short", "expected 10 descriptions, got 9")],
)
def test_invalid_reply_is_asked_again_then_succeeds(server, bad, problem):
    server.script = [bad]
    out = describe_labels(["walking"], "test-model", base_url=server.url, options=FAST)
    assert len(out["walking"]) == 10
    assert [r["behaviour"] for r in server.requests] == [bad, "ok"]


@pytest.mark.parametrize(
    "bad, problem",
    [("malformed", "not valid JSON"), ("refusal", "refused"), ("short", "expected 10 descriptions, got 9")],
)
def test_invalid_reply_every_time_is_reported_after_the_attempts(server, bad, problem):
    server.default = bad
    with pytest.raises(ZeroharError) as e:
        describe_labels(["walking"], "test-model", base_url=server.url, options=FAST)
    msg = str(e.value)
    assert "'walking'" in msg and "after 3 attempts" in msg and problem in msg
    assert server.count == 3


def test_server_error_that_never_clears_is_reported_with_the_url(server):
    server.default = "500"
    with pytest.raises(ZeroharError) as e:
        describe_labels(["walking"], "test-model", base_url=server.url, options=FAST)
    assert str(e.value) == (
        f"could not get an answer from the LLM server at {server.url} after 3 attempts (last: HTTP 500)"
    )
    assert server.count == 3  # 1 + 2 retries


def test_client_error_is_not_retried_and_the_quoted_key_is_scrubbed(server):
    server.default = "401"
    with pytest.raises(ZeroharError, match=r"answered HTTP 401 for model 'test-model' \(Incorrect API key") as e:
        describe_labels(["walking"], "test-model", base_url=server.url, options=FAST)
    assert server.count == 1
    assert KEY not in str(e.value) and "***" in str(e.value)


def test_unreachable_server_through_the_cli_is_one_line_exit_2(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc = main(["describe", "walking", "--llm-model", "m", "--base-url", f"http://127.0.0.1:{port}/v1",
               "--out", str(tmp_path / "x.json"), *CLI_FAST])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and not (tmp_path / "x.json").exists()
    url = f"http://127.0.0.1:{port}/v1"
    assert err[-1].startswith(f"zerohar describe: error: could not get an answer from the LLM server at {url}")


@pytest.mark.parametrize("flag, value, message", [("--n", "0", "--n must be between 1 and 100"),
                                                  ("--concurrency", "0", "--concurrency must be at least 1")])
def test_bad_numbers(server, tmp_path, capsys, flag, value, message):
    rc = main(["describe", "walking", "--llm-model", "m", "--base-url", server.url, "--out", str(tmp_path / "x.json"),
               flag, value])
    assert rc == 2 and message in capsys.readouterr().err and server.count == 0


def test_unreachable_server_is_one_sentence_with_the_url():
    with socket.socket() as s:  # a port that nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(ZeroharError) as e:
        describe_labels(["walking", "running"], "test-model", base_url=url, options=FAST)
    msg = str(e.value)
    assert msg.startswith(f"could not get an answer from the LLM server at {url} after 3 attempts (last: cannot")
    assert msg.count(".") <= 3 and "\n" not in msg  # one sentence (the dots are the IP address)


# ---------------------------------------------------------------------------------------------- cache / resume
def test_second_run_is_served_from_the_cache(server):
    first = describe_labels(["walking", "sitting"], "test-model", base_url=server.url, options=FAST)
    server.reset()
    server.default = "500"  # any request now would fail
    second = describe_labels(["walking", "sitting"], "test-model", base_url=server.url, options=FAST)
    assert second == first
    assert server.count == 0
    assert cached_descriptions("test-model", "walking") == first["walking"]
    assert cached_descriptions("other-model", "walking") is None
    assert cached_descriptions("test-model", "walking", n=5) is None


def test_interrupted_run_resumes_with_the_missing_labels(server, tmp_path):
    server.per_label["c"] = ["refusal"] * 3  # the run stops with c undescribed
    out = tmp_path / "d.json"
    rc = main(["describe", "a", "b", "c", "--llm-model", "test-model", "--base-url", server.url, "--out", str(out),
               *CLI_FAST])
    assert rc == 2 and not out.exists()
    assert sorted(server.labels_requested()) == ["a", "b", "c", "c", "c"]
    server.reset()
    rc = main(["describe", "a", "b", "c", "--llm-model", "test-model", "--base-url", server.url, "--out", str(out),
               *CLI_FAST])
    assert rc == 0
    assert server.labels_requested() == ["c"]
    assert list(load_label_descriptions(out)) == ["a", "b", "c"]


def test_ctrl_c_then_rerun_asks_only_for_the_labels_not_yet_cached(server, tmp_path):
    server.sleep_s = 3.0
    server.per_label["c"] = ["timeout"] * 20  # c hangs; a and b are answered and cached first (one worker)
    out = tmp_path / "d.json"
    env = {**os.environ, "ZEROHAR_CACHE": os.environ["ZEROHAR_CACHE"], "OPENAI_API_KEY": KEY}
    cmd = [sys.executable, "-m", "zerohar.cli", "describe", "a", "b", "c", "--llm-model", "test-model", "--base-url",
           server.url, "--out", str(out), "--concurrency", "1", "--timeout", "1", "--retries", "9", "--backoff",
           "0.001", "--no-progress"]
    # SIGINT as a terminal delivers it: a test run started in the background (`make test &`) ignores SIGINT, the
    # child would inherit that, and Python then installs no KeyboardInterrupt handler
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 30
        while "c" not in server.labels_requested():
            assert proc.poll() is None and time.monotonic() < deadline, "the run ended before asking for c"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "interrupted" in err, (proc.returncode, err[-2000:])  # its stderr if not
    assert not out.exists()
    server.reset()
    server.per_label.clear()
    rc = main(["describe", "a", "b", "c", "--llm-model", "test-model", "--base-url", server.url, "--out", str(out),
               *CLI_FAST])
    assert rc == 0 and server.labels_requested() == ["c"]


# ---------------------------------------------------------------------------------------------- the key
def test_api_key_is_sent_but_never_written_or_logged(server, tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    server.script = ["429", "malformed"]
    out = tmp_path / "out" / "labels.json"
    rc = main(["-v", "describe", "rock climbing", "walking", "--llm-model", "test-model", "--base-url", server.url,
               "--out", str(out), *CLI_FAST])
    assert rc == 0
    assert all(r["headers"].get("authorization") == f"Bearer {KEY}" for r in server.requests)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert out in written and any("describe" in p.parts for p in written)  # output and cache were both written
    for p in written:
        assert KEY not in p.read_text(encoding="utf-8", errors="replace"), p
        assert "Q7xWv93k" not in p.read_text(encoding="utf-8", errors="replace"), p
    captured = capsys.readouterr()
    assert caplog.records and KEY not in caplog.text and "Q7xWv93k" not in caplog.text
    assert KEY not in captured.out + captured.err


def test_base_url_without_a_key_sends_a_placeholder(server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    describe_labels(["walking"], "test-model", base_url=server.url, options=FAST)
    auth = server.requests[0]["headers"]["authorization"]
    assert auth.startswith("Bearer ") and len(auth) > len("Bearer ")


def test_no_key_and_no_base_url_says_how_to_set_them(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ZeroharError) as e:
        describe_labels(["walking"], "test-model", options=FAST)
    msg = str(e.value)
    assert "OPENAI_API_KEY" in msg and "--base-url" in msg and msg.count(". ") == 0


def test_missing_openai_package_says_how_to_install(server, monkeypatch):
    monkeypatch.setitem(sys.modules, "openai", None)  # makes `import openai` fail
    with pytest.raises(ZeroharError, match=r"pip install 'zerohar\[llm\]'"):
        describe_labels(["walking"], "test-model", base_url=server.url, options=FAST)


# ---------------------------------------------------------------------------------------------- bad input
def test_empty_label_is_refused():
    with pytest.raises(ZeroharError, match="label 2 in --labels is empty: expected a non-empty activity name"):
        clean_labels(["walking", "  "])


def test_duplicate_labels_are_dropped_with_one_warning(caplog):
    with caplog.at_level(logging.WARNING):
        out = clean_labels(["walking", "running", "walking", " walking ", "running"])
    assert out == ["walking", "running"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "'walking' (x3), 'running' (x2)" in warnings[0].getMessage()


def test_labels_file_text_and_json(tmp_path):
    t = tmp_path / "labels.txt"
    t.write_text("# my labels\nrock climbing\n\n  kayaking  \nrock climbing\n")
    assert read_labels_file(t) == (["rock climbing", "kayaking"], {})
    j = tmp_path / "labels.json"
    j.write_text(json.dumps(["rowing", "skiing"]))
    assert read_labels_file(j) == (["rowing", "skiing"], {})
    d = tmp_path / "descs.json"
    d.write_text(json.dumps({"provenance": {}, "labels": {"yoga": ["x"], "golf": ["y"]}}))
    assert read_labels_file(d)[0] == ["yoga", "golf"]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("l.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is not a UTF-8 text file (line 1 holds the byte 0x89): "
         "expected UTF-8 text with one label"),
        ("l.txt", b"walking\n\x00\n", "is not a text file (it holds NUL bytes)"),
        ("l.txt", b"walking\n\xff\xfe\n", "is not a UTF-8 text file (line 2"),
        ("l.json", b'["rowing", ', "is not valid JSON (line 1"),
        ("l.json", b'{"a": 1}', "holds a JSON object: expected UTF-8 text"),
        ("l.txt", b"# only a comment\n\n", "names no labels"),
        ("l.json", b'["rowing", ""]', "label 2 in"),
    ],
)
def test_bad_labels_file(tmp_path, name, content, message):
    f = tmp_path / name
    f.write_bytes(content)
    with pytest.raises(ZeroharError, match=re.escape(message)):
        read_labels_file(f)


def test_missing_labels_file(tmp_path):
    with pytest.raises(ZeroharError, match="labels file .*nope.txt does not exist"):
        read_labels_file(tmp_path / "nope.txt")


# ---------------------------------------------------------------------------------------------- the command
def test_cli_writes_the_label_file_format_with_provenance(server, tmp_path, capsys):
    out = tmp_path / "x.json"
    rc = main(["describe", "rock climbing", "--llm-model", "test-model", "--base-url", server.url, "--out", str(out),
               *CLI_FAST])
    assert rc == 0
    prov, labels = read_label_file(out)
    assert list(labels) == ["rock climbing"] and len(labels["rock climbing"]) == 10
    assert prov["generator"] == "test-model"
    assert prov["server"] == f"127.0.0.1:{server.port}"
    assert prov["instruction_version"] == INSTRUCTION_VERSION and prov["n"] == 10
    assert "body motion only" in prov["instruction"]
    assert str(out) in capsys.readouterr().out


def test_cli_refuses_to_overwrite_before_any_request(server, tmp_path, capsys):
    out = tmp_path / "x.json"
    out.write_text("{}")
    rc = main(["describe", "walking", "--llm-model", "test-model", "--base-url", server.url, "--out", str(out),
               *CLI_FAST])
    assert rc == 2 and server.count == 0
    assert f"output {out} already exists; pass --update to merge into it, or --force" in capsys.readouterr().err
    assert out.read_text() == "{}"


def test_cli_update_merges_and_force_overwrites(server, tmp_path):
    out = tmp_path / "x.json"
    args = ["--llm-model", "test-model", "--base-url", server.url, "--out", str(out), *CLI_FAST]
    assert main(["describe", "walking", *args]) == 0
    assert main(["describe", "running", "--update", *args]) == 0
    prov, labels = read_label_file(out)
    assert list(labels) == ["walking", "running"]
    assert prov["updates"][0]["labels"] == ["running"]
    assert main(["describe", "jumping", "--force", *args]) == 0
    assert list(load_label_descriptions(out)) == ["jumping"]


def test_cli_update_refuses_an_invalid_existing_file(server, tmp_path, capsys):
    out = tmp_path / "x.json"
    out.write_text('{"labels": []}')
    rc = main(["describe", "walking", "--update", "--llm-model", "m", "--base-url", server.url, "--out", str(out)])
    assert rc == 2 and server.count == 0
    assert "'labels' must map labels to descriptions, found a JSON array" in capsys.readouterr().err


def test_cli_without_labels(server, tmp_path, capsys):
    rc = main(["describe", "--llm-model", "m", "--base-url", server.url, "--out", str(tmp_path / "x.json")])
    assert rc == 2
    assert "no labels given: pass LABEL arguments or --labels-file FILE" in capsys.readouterr().err


def test_cli_labels_file_and_arguments_are_deduplicated(server, tmp_path):
    f = tmp_path / "labels.txt"
    f.write_text("walking\nrowing\n")
    out = tmp_path / "x.json"
    rc = main(["describe", "walking", "--labels-file", str(f), "--llm-model", "m", "--base-url", server.url,
               "--out", str(out), *CLI_FAST])
    assert rc == 0
    assert list(load_label_descriptions(out)) == ["walking", "rowing"]
    assert sorted(server.labels_requested()) == ["rowing", "walking"]
