"""LLM-written activity-label descriptions (what `zerohar describe` runs).

For each label, one chat-completion request to an OpenAI-compatible server (OpenAI, or vLLM / Ollama /
llama.cpp through `base_url`) asks for `n` body-motion descriptions under the ZeroHAR instruction, with a JSON
schema `response_format`; the reply is validated with pydantic. A reply that fails validation (malformed JSON,
wrong count, repeats, a refusal) is asked for again, up to `attempts` times, then reported. Rate limits (429),
server errors (5xx), timeouts and refused connections are retried with exponential backoff. Requests run in a
small thread pool.

Every valid answer is cached at once under ``cache_dir()/describe/``, keyed by (model, instruction version,
label, n): a second run sends no request, and a run that stopped half-way resumes with the labels it lacks.

The API key comes from `OPENAI_API_KEY` (or the `api_key` argument). It is handed to the client and nowhere
else: it is not logged, not cached, not written, and any server message quoted in an error is scrubbed of it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import random
import re
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError, ValidationInfo, field_validator

from zerohar import __version__
from zerohar.errors import ZeroharError
from zerohar.io import atomic_write_text
from zerohar.paths import cache_dir
from zerohar.text.labels import N_DESCRIPTIONS, clean_labels

logger = logging.getLogger(__name__)

#: Bump when INSTRUCTION changes: it is part of every cache key and of the provenance of every file.
INSTRUCTION_VERSION = "zerohar-v1"
#: The ZeroHAR instruction (system message); `{n}` is the number of descriptions asked for.
INSTRUCTION = (
    "You describe human activities for a system that recognises them from wearable motion sensors "
    "(accelerometers and gyroscopes on the body). For the activity label you are given, write {n} different "
    "descriptions of how the body moves while a person performs it. Rules: each description is one concise "
    "sentence of at most 25 words; describe body motion only: the movements of the arms, hands, legs, feet, "
    "trunk and head, the posture, and the direction, speed and rhythm of movement; mention an object only where "
    "the body handles it; do not describe the environment, the purpose, feelings or sensors; use no metaphors; "
    "make the descriptions differ from each other and bring out what distinguishes this activity from similar "
    "ones. Answer with a JSON object {{\"descriptions\": [...]}} holding exactly {n} strings."
)
#: The user message; the label is the text after the colon.
USER_PROMPT = "Activity label: {label}"
#: Placeholder key sent to a `base_url` server when no key is set (local servers ignore it).
NO_KEY = "no-key-set"
DEFAULT_BASE_URL = "https://api.openai.com/v1"


def instruction(n: int = N_DESCRIPTIONS) -> str:
    """The system message asking for `n` descriptions."""
    return INSTRUCTION.format(n=n)


def response_format(n: int = N_DESCRIPTIONS) -> dict:
    """The JSON-schema `response_format` of a request: an object with exactly `n` description strings."""
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "label_descriptions",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {
                    "descriptions": {"type": "array", "items": {"type": "string"}, "minItems": n, "maxItems": n}
                },
                "required": ["descriptions"],
                "additionalProperties": False,
            },
        },
    }


class LabelDescriptions(BaseModel):
    """A valid reply: exactly `n` (validation context) distinct, non-empty descriptions."""

    model_config = ConfigDict(extra="forbid")
    descriptions: list[Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]]

    @field_validator("descriptions")
    @classmethod
    def _count_and_distinct(cls, v: list[str], info: ValidationInfo) -> list[str]:
        n = (info.context or {}).get("n")
        if n is not None and len(v) != n:
            raise ValueError(f"expected {n} descriptions, got {len(v)}")
        if len({" ".join(s.casefold().split()) for s in v}) != len(v):
            raise ValueError("the descriptions repeat one another")
        return [" ".join(s.split()) for s in v]


# ---------------------------------------------------------------------------------------------- cache
def _cache_file(model: str, label: str, n: int) -> Path:
    key = json.dumps([model, INSTRUCTION_VERSION, label, n], ensure_ascii=False)
    return cache_dir() / "describe" / f"{hashlib.sha256(key.encode()).hexdigest()}.json"


def cached_descriptions(model: str, label: str, n: int = N_DESCRIPTIONS) -> list[str] | None:
    """The cached descriptions of `label` from `model` under the current instruction, or None."""
    f = _cache_file(model, label, n)
    if not f.is_file():
        return None
    try:
        d = json.loads(f.read_text(encoding="utf-8"))
        if [d["model"], d["instruction_version"], d["label"], d["n"]] != [model, INSTRUCTION_VERSION, label, n]:
            return None
        return LabelDescriptions.model_validate({"descriptions": d["descriptions"]}, context={"n": n}).descriptions
    except (OSError, ValueError, KeyError, TypeError, ValidationError):
        logger.debug("ignoring unreadable describe cache file %s", f)
        return None


def _cache_put(model: str, label: str, n: int, descriptions: list[str], server: str) -> None:
    entry = {
        "model": model,
        "instruction_version": INSTRUCTION_VERSION,
        "label": label,
        "n": n,
        "descriptions": descriptions,
        "server": server,
        "date": _dt.date.today().isoformat(),
    }
    atomic_write_text(_cache_file(model, label, n), json.dumps(entry, ensure_ascii=False, indent=1) + "\n")


# ---------------------------------------------------------------------------------------------- requests
@dataclass
class DescribeOptions:
    """How requests are made.

    Attributes:
        timeout: Seconds before a request is abandoned (then retried).
        retries: Extra attempts after a 429 / 5xx / timeout / connection failure.
        backoff: Delay before the first such retry, doubled each time (with jitter), at most `max_backoff`.
        max_backoff: Upper bound of one delay (also caps a server's Retry-After).
        attempts: Requests per label whose replies fail validation before the label is reported.
        concurrency: Requests in flight at once.
        temperature: Sampling temperature sent to the server; None = the server's default.
        progress: Show a progress bar.
    """

    timeout: float = 60.0
    retries: int = 5
    backoff: float = 1.0
    max_backoff: float = 30.0
    attempts: int = 3
    concurrency: int = 4
    temperature: float | None = None
    progress: bool = True


class _InvalidReply(Exception):
    pass


class _GaveUp(Exception):
    """Transport failures outlasted the retries (the message is user-facing, already scrubbed)."""


class _Cancelled(Exception):
    pass


def resolve_server(base_url: str | None, api_key: str | None) -> tuple[str, str]:
    """(base URL, key) for the client; a clear error when neither a key nor a server is given."""
    key = (api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")).strip()
    url = (base_url or os.environ.get("OPENAI_BASE_URL") or "").strip()
    if not key and not url:
        raise ZeroharError(
            "no API key and no server: set OPENAI_API_KEY for the OpenAI API, or pass --base-url URL for an "
            "OpenAI-compatible server (vLLM, Ollama, llama.cpp), which needs no key"
        )
    if url and not urlsplit(url).scheme.startswith("http"):
        raise ZeroharError(f"--base-url {url!r} is not an http(s) URL: expected e.g. http://127.0.0.1:8000/v1")
    return url or DEFAULT_BASE_URL, key or NO_KEY


def server_host(url: str) -> str:
    """The host[:port] of a URL, without user, password, path or query (what provenance records)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{host}:{parts.port}" if parts.port else host


def _openai():
    try:
        import openai
    except ImportError:
        raise ZeroharError(
            "zerohar describe needs the openai package: pip install 'zerohar[llm]' (or pip install openai)"
        ) from None
    return openai


def _scrub(text: str, key: str) -> str:
    """A server message safe to show: the key, and anything shaped like an API key, replaced by ***."""
    if key and key != NO_KEY:
        text = text.replace(key, "***")
    return re.sub(r"\b(sk|key|token)-[A-Za-z0-9_\-*]{6,}", r"\1-***", text)[:300]


def _parse_reply(resp, n: int) -> list[str]:
    if not getattr(resp, "choices", None):
        raise _InvalidReply("the reply has no choices")
    choice = resp.choices[0]
    msg = choice.message
    refusal = getattr(msg, "refusal", None)
    if refusal:
        raise _InvalidReply(f"the model refused ({str(refusal)[:120]!r})")
    if choice.finish_reason == "length":
        raise _InvalidReply("the reply was cut off at the token limit")
    content = (msg.content or "").strip()
    if not content:
        raise _InvalidReply("the reply is empty")
    # Some local servers wrap JSON in a Markdown code fence despite the schema.
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", content, flags=re.S)
    if fenced:
        content = fenced.group(1)
    try:
        return LabelDescriptions.model_validate_json(content, context={"n": n}).descriptions
    except ValidationError as e:
        err = e.errors()[0]
        if err["type"] == "json_invalid":
            raise _InvalidReply("the reply is not valid JSON") from None
        where = ".".join(str(x) for x in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        raise _InvalidReply(msg + (f" (at {where})" if where and where != "descriptions" else "")) from None


def describe_labels(
    labels: list[str],
    model: str,
    *,
    base_url: str | None = None,
    n: int = N_DESCRIPTIONS,
    api_key: str | None = None,
    options: DescribeOptions | None = None,
) -> dict[str, list[str]]:
    """Descriptions of each label from an LLM, from the cache where possible.

    Args:
        labels: Activity labels (cleaned with :func:`clean_labels`).
        model: Model name on the server ("gpt-4o-mini", "llama3.1:8b", ...).
        base_url: An OpenAI-compatible server ("http://127.0.0.1:8000/v1"); None = `$OPENAI_BASE_URL` or OpenAI.
        n: Descriptions per label.
        api_key: The key; None = `$OPENAI_API_KEY` (a placeholder is sent to a `base_url` server without one).
        options: Timeouts, retries, concurrency, progress (:class:`DescribeOptions`).

    Returns:
        label -> n descriptions, in the order of `labels`.

    Raises:
        ZeroharError: bad labels, no key and no server, an unreachable server (after the retries), a server
            error that retrying cannot fix, or labels whose replies stayed invalid (the others are cached).
    """
    opt = options or DescribeOptions()
    if not isinstance(n, int) or n < 1 or n > 100:
        raise ZeroharError(f"--n must be between 1 and 100 descriptions per label, found {n}")
    if opt.concurrency < 1:
        raise ZeroharError(f"--concurrency must be at least 1, found {opt.concurrency}")
    if opt.temperature is not None and not 0.0 <= opt.temperature <= 2.0:
        raise ZeroharError(f"--temperature must be between 0 and 2 (the API's range), found {opt.temperature:g}")
    labels = clean_labels(labels)
    if not model or not model.strip():
        raise ZeroharError("--llm-model is empty: expected the model name the server knows (e.g. gpt-4o-mini)")
    url, key = resolve_server(base_url, api_key)

    results: dict[str, list[str]] = {}
    for label in labels:
        hit = cached_descriptions(model, label, n)
        if hit is not None:
            results[label] = hit
    todo = [lb for lb in labels if lb not in results]
    if results:
        logger.info("%d of %d labels from the cache", len(results), len(labels))
    if not todo:
        return {lb: results[lb] for lb in labels}

    openai = _openai()
    client = openai.OpenAI(api_key=key, base_url=url, timeout=opt.timeout, max_retries=0)
    stop = threading.Event()
    host = server_host(url)

    def one(label: str) -> list[str]:
        problems: list[str] = []
        failures = 0
        while True:
            if stop.is_set():
                raise _Cancelled
            try:
                kwargs = {} if opt.temperature is None else {"temperature": opt.temperature}
                resp = client.chat.completions.create(
                    model=model,
                    messages=[
                        {"role": "system", "content": instruction(n)},
                        {"role": "user", "content": USER_PROMPT.format(label=label)},
                    ],
                    response_format=response_format(n),
                    **kwargs,
                )
            except openai.APIStatusError as e:
                code = e.status_code
                if code not in (408, 409, 429) and code < 500:
                    raise ZeroharError(
                        f"the LLM server at {url} answered HTTP {code} for model {model!r} "
                        f"({_scrub(_server_message(e), key)})"
                    ) from None
                failures += 1
                what = f"HTTP {code}" + (" rate limited" if code == 429 else "")
                _wait_or_give_up(failures, opt, url, what, stop, _retry_after(e))
                continue
            except openai.APITimeoutError:
                failures += 1
                _wait_or_give_up(failures, opt, url, f"no answer within {opt.timeout:g} s", stop)
                continue
            except openai.APIConnectionError as e:
                failures += 1
                cause = f" ({e.__cause__.__class__.__name__})" if e.__cause__ else ""
                _wait_or_give_up(failures, opt, url, f"cannot connect{cause}", stop)
                continue
            try:
                descs = _parse_reply(resp, n)
            except _InvalidReply as e:
                problems.append(str(e))
                if len(problems) >= opt.attempts:
                    raise _InvalidReply(problems[-1]) from None
                logger.warning("label %r: invalid reply (%s); asking again", label, e)
                continue
            _cache_put(model, label, n, descs, host)
            return descs

    from tqdm.auto import tqdm

    invalid: dict[str, str] = {}
    fatal: BaseException | None = None
    interrupted = False
    pool = ThreadPoolExecutor(max_workers=min(opt.concurrency, len(todo)), thread_name_prefix="describe")
    try:
        futures = {pool.submit(one, lb): lb for lb in todo}
        with tqdm(total=len(todo), desc="describing labels", unit="label", disable=not opt.progress) as bar:
            for fut in as_completed(futures):
                label = futures[fut]
                try:
                    results[label] = fut.result()
                except _InvalidReply as e:
                    invalid[label] = str(e)
                except _Cancelled:
                    pass
                except (_GaveUp, ZeroharError) as e:
                    stop.set()  # the server is down or refuses us: do not start the other labels
                    fatal = fatal or e
                bar.update(1)
    except BaseException:  # Ctrl-C: stop at once; answers already received are cached
        interrupted = True
        stop.set()
        raise
    finally:
        pool.shutdown(wait=not interrupted, cancel_futures=True)
        if not interrupted:
            client.close()
    if fatal is not None:
        done = len(results)
        raise ZeroharError(f"{fatal}" + (f"; {_labels(done)} described so far are cached" if done else "")) from None
    if invalid:
        names = ", ".join(repr(lb) for lb in invalid)
        last = next(iter(invalid.values()))
        raise ZeroharError(
            f"model {model!r} gave no valid descriptions for {names} after {opt.attempts} attempts each "
            f"(last problem: {last}); {_labels(len(results))} described are cached, so a rerun asks only for "
            f"the missing ones"
        )
    return {lb: results[lb] for lb in labels}


def _server_message(e) -> str:
    """The server's own error message (the body's "message"), else the client's summary."""
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        if isinstance(inner.get("message"), str):
            return inner["message"]
    return str(getattr(e, "message", e))


def _labels(k: int) -> str:
    return f"{k} label" if k == 1 else f"{k} labels"


def _retry_after(e) -> float | None:
    try:
        v = e.response.headers.get("retry-after")
        return float(v) if v is not None else None
    except (AttributeError, TypeError, ValueError):
        return None


def _wait_or_give_up(
    failures: int, opt: DescribeOptions, url: str, what: str, stop: threading.Event, hint: float | None = None
) -> None:
    """Sleep before retry `failures` (exponential backoff with jitter), or give up after `opt.retries`."""
    if failures > opt.retries:
        raise _GaveUp(f"could not get an answer from the LLM server at {url} after {failures} attempts (last: {what})")
    delay = min(opt.max_backoff, opt.backoff * 2 ** (failures - 1)) * (1 + 0.25 * random.random())
    if hint is not None:
        delay = min(opt.max_backoff, max(delay, hint))
    logger.info("LLM server %s: %s; retry %d of %d in %.1f s", url, what, failures, opt.retries, delay)
    if stop.wait(delay):
        raise _Cancelled


# ---------------------------------------------------------------------------------------------- output
def describe_provenance(model: str, base_url: str | None, n: int = N_DESCRIPTIONS) -> dict:
    """Provenance of `zerohar describe` output: model, server host (no path, user or key), instruction, date."""
    url = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
    return {
        "generator": model,
        "server": server_host(url),
        "instruction_version": INSTRUCTION_VERSION,
        "instruction": instruction(n),
        "n": n,
        "date": _dt.date.today().isoformat(),
        "tool": f"zerohar describe {__version__}",
    }
