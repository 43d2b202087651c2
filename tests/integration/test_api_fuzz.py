"""No request shape makes the API answer 5xx.

Two fuzzers against one in-process app (fake embedder, a collection with policies and flags):
schemathesis generates valid and invalid requests for every operation of the app's own OpenAPI
schema, and Hypothesis sends what no schema describes (any method, path, header and body). Nothing
leaves the machine: names do not resolve and only loopback connections are let through.

CI runs a fixed, derandomized set of examples in well under a minute; ``FUZZ_EXAMPLES=2000`` runs
more, with fresh randomness each time.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from lookalike.api import create_app
from lookalike.config import load_settings
from lookalike.usecases import Context, banks, ingest, policies
from tests.helpers import FakeDetector, FakeEmbedder, jpeg_bytes, make_image, write_images
from tests.unit.test_policies import PLANTED, plant, write_policy

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=EXAMPLES or 200,  # enough for every operation of the schema (26 now) to come up
    derandomize=not EXAMPLES,  # CI tries the same requests every run
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
RAW = settings(FUZZ, max_examples=EXAMPLES or 600)  # cheap requests: more of them


def _offline_getaddrinfo(real: Any) -> Any:
    def getaddrinfo(host: Any, port: Any, family: int = 0, type: int = 0, *args: Any) -> Any:
        return real(host, port, family, type, 0, socket.AI_NUMERICHOST)  # a name: gaierror, no DNS

    return getaddrinfo


def _loopback_only(real: Any) -> Any:
    def connect(sock: socket.socket, address: Any) -> None:
        host = str(address[0]).split("%")[0] if isinstance(address, tuple) else ""
        if not host or not ipaddress.ip_address(host).is_loopback:
            raise ConnectionRefusedError(f"test: no connection leaves the machine ({address})")
        real(sock, address)

    return connect


def build(folder: Path) -> Context:
    """15 photos, 3 of them flagged by a policy; a detector and a folder the API may read."""
    embedder = FakeEmbedder()
    embedder.concepts["a prohibited thing"] = embedder.embed_images([make_image(PLANTED)])[0]
    write_images(folder / "roots", 2)
    settings = load_settings(db=str(folder / "fuzz.db"), workers=2, index_roots=str(folder / "roots"))
    ctx = Context(settings, embedder=embedder, detector=FakeDetector())
    policies.add(ctx, str(write_policy(folder)))
    banks.create(ctx, "known", action="refuse", by="fuzz")
    banks.add(ctx, "known", ["a" * 64, str(folder / "roots" / "img_0000.jpg")], by="fuzz")
    write_images(folder / "photos", 12)
    plant(folder / "photos")
    ingest.index(ctx, str(folder / "photos"))
    return ctx


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", _offline_getaddrinfo(socket.getaddrinfo))
        patch.setattr(socket.socket, "connect", _loopback_only(socket.socket.connect))
        app = create_app(build(tmp_path_factory.mktemp("fuzz")))
        with TestClient(app, raise_server_exceptions=True) as client:
            yield client


def _part(value: Any) -> Any:
    return value if isinstance(value, bytes | str) else str(value)  # as requests and urllib3 write it


def send(api: TestClient, kwargs: dict[str, Any]) -> Any:
    """A request built for `requests` (what schemathesis serialises to), sent through httpx."""
    data = kwargs.get("data")
    headers = dict(kwargs.get("headers") or {})
    if kwargs.get("cookies"):
        headers["cookie"] = "; ".join(f"{name}={value}" for name, value in kwargs["cookies"].items())
    files = [
        (name, (spec[0], _part(spec[1]), *spec[2:]))
        for name, spec in kwargs.get("files") or []
        if spec[1] is not None
    ]
    return api.request(
        kwargs["method"],
        kwargs["url"],
        params=kwargs.get("params"),
        headers=headers,
        json=kwargs.get("json"),
        content=data if isinstance(data, bytes | str) else None,
        data=data if isinstance(data, dict) else None,
        files=files or None,
    )


def no_server_error(response: Any, request: str) -> None:
    assert response.status_code < 500, f"{request} -> {response.status_code} {response.text[:300]}"


SCHEMA: Any = None


def schema(api: TestClient) -> Any:
    global SCHEMA
    if SCHEMA is None:
        SCHEMA = schemathesis.openapi.from_dict(api.app.openapi())  # type: ignore[attr-defined]
    return SCHEMA


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_requests_the_schema_describes_never_get_a_5xx(api: TestClient, mode: GenerationMode) -> None:
    seen: set[str] = set()

    def check(case: Any) -> None:
        seen.add(f"{case.operation.method.upper()} {case.operation.path}")
        kwargs = case.as_transport_kwargs(base_url="http://testserver")
        no_server_error(send(api, kwargs), f"{kwargs['method']} {kwargs['url']}")

    every = [op.ok() for op in schema(api).get_all_operations()]
    operations = {f"{op.method.upper()} {op.path}" for op in every}
    assert len(operations) >= 19
    if mode is GenerationMode.POSITIVE:
        # Operation by operation, so that every one is tried however many there are.
        each = settings(FUZZ, max_examples=EXAMPLES or 8)
        for operation in every:
            each(given(case=operation.as_strategy(generation_mode=mode))(check))()
        assert seen == operations
    else:  # only operations with parameters or a body have invalid forms
        FUZZ(given(case=schema(api).as_strategy(generation_mode=mode))(check))()
        assert len(seen) >= 10, sorted(seen)


# Each route with its method and a valid body or query, which the fuzzer then spoils one part of.
ROUTES: list[tuple[str, str, dict[str, str]]] = [
    ("GET", "/", {}), ("GET", "/review", {}), ("GET", "/health", {}), ("GET", "/stats", {}),
    ("GET", "/metrics", {}), ("GET", "/docs", {}), ("GET", "/redoc", {}), ("GET", "/openapi.json", {}),
    ("POST", "/search", {"text": '"red"', "k": "5", "offset": "0", "min_score": "0.1", "since": '"2020-01-01"'}),
    ("POST", "/search", {"id": "1", "sources": '["product"]'}),
    ("POST", "/search", {"image_url": '"http://203.0.113.9/a.jpg"', "box": '"0,0,10,10"', "detect": "true"}),
    ("POST", "/index", {"inputs": '["img_0000.jpg"]', "source": '"fuzz"', "detect": "false"}),
    ("GET", "/items/{}", {}), ("DELETE", "/items/{}", {"purge": "false"}), ("GET", "/items/{}/image", {"size": "64"}),
    ("GET", "/jobs/{}", {}), ("POST", "/jobs/{}/cancel", {}), ("GET", "/jobs/{}/report", {}),
    ("POST", "/scan", {"labels": '"[labels.a]\\nprompts = [\\"x\\"]"', "format": '"csv"', "min_score": "0.2"}),
    ("POST", "/duplicates", {"threshold": "0.9", "by": '"pdq"', "max_distance": "31"}),
    ("GET", "/partitions", {}), ("DELETE", "/partitions", {"before": "1990-01-01"}), ("GET", "/policies", {}),
    ("GET", "/flags", {"limit": "10", "offset": "0", "status": "open", "since": "2020-01-01"}),
    ("POST", "/flags/{}/review", {"decision": '"dismiss"', "by": '"fuzz"', "note": '""', "take_down": "false"}),
    ("GET", "/audit", {"format": "csv", "since": "2020-01-01"}),
    ("GET", "/flags/next", {"by": "fuzz", "policy": "prohibited", "after": "1", "lease_s": "30", "since": "2020-01-01"}),
    ("GET", "/flags/{}", {}), ("POST", "/flags/{}/claim", {"by": '"fuzz"', "lease_s": "30"}),
    ("DELETE", "/flags/{}/claim", {"by": "fuzz"}), ("GET", "/review/config", {}),
    ("GET", "/webhooks/deliveries", {"status": "failed", "limit": "10", "offset": "0"}),
    ("POST", "/webhooks/deliveries/{}/replay", {}), ("POST", "/webhooks/replay", {}), ("POST", "/webhooks/ping", {}),
    ("POST", "/waves", {"since": '"2d"', "until": '"2030-01-01"', "min_sellers": "2", "threshold": "0.9", "dry_run": "true"}),
    ("GET", "/waves", {"limit": "10", "offset": "0"}),
    ("GET", "/h/hash", {"url": "http://203.0.113.9/a.jpg"}), ("POST", "/h/hash", {}), ("GET", "/banks", {}),
    ("GET", "/m/lookup", {"signal_type": "pdq", "signal": "a" * 64, "bank": "known"}),
    ("POST", "/m/lookup", {"signal_type": '"pdq"', "signals": '["' + "a" * 64 + '"]', "banks": '["known"]'}),
    ("GET", "/static/{}", {}), ("GET", "/static/docs/{}", {}),
]  # fmt: skip
HEADER_NAMES = [
    "content-type", "content-length", "x-api-key", "accept", "accept-encoding", "range", "if-range",
    "if-none-match", "if-modified-since", "cookie", "expect", "transfer-encoding", "origin", "x-forwarded-for",
]  # fmt: skip
CONTENT_TYPES = [
    "application/json", "multipart/form-data", "multipart/form-data; boundary=x", "multipart/form-data; boundary=",
    'multipart/form-data; boundary="', "application/x-www-form-urlencoded", "text/plain", "image/jpeg",
    "application/json; charset=latin-1",
]  # fmt: skip
# Values as JSON text (json.dumps cannot even write an integer of 5,000 digits).
HOSTILE_JSON = [
    "9" * 19, str(2**63), "9" * 25, "-" + "9" * 25, "9" * 5000, "1e400", "-1e400", "1e-400", "NaN", "Infinity",
    "-0", "0.1" + "1" * 100, '"' + "x" * 10_000 + '"', '"\\ud800"', '"\\u0000"', '"9999-12-31"', '"0001-01-01"',
    "[" * 5000 + "]" * 5000, "{}", "[]", "null", "true", '""', '"../../etc/passwd"', '"%00"',
]  # fmt: skip
# Path segments and query values as they appear in a URL.
HOSTILE_TEXT = [
    "1", "0", "-1", "9" * 19, str(2**63), "9" * 25, "-" + "9" * 25, "9" * 5000, "1e3", "0x10", "%00", "..",
    "%2e%2e%2f", "..%2f..%2fetc%2fpasswd", "%C2%B2", "%ff", "9999-12-31", "0001-01-01", "10000-01-01", "nan", "inf",
]  # fmt: skip
text_values = st.one_of(
    st.sampled_from(HOSTILE_TEXT),
    st.text(max_size=40).map(lambda text: quote(text, safe="")),
    st.integers().map(str),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
json_texts = st.one_of(st.sampled_from(HOSTILE_JSON), json_values.map(lambda value: json.dumps(value)))
FIELDS = sorted({name for _, _, fields in ROUTES for name in fields} | {"item_id", "until", "inputs"})
IMAGE = jpeg_bytes(make_image(3, size=(32, 24)))


def multipart(fields: dict[str, str], with_image: bool) -> tuple[bytes, str]:
    boundary = "fuzzboundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode(
            "utf-8", "surrogatepass"
        )
        for name, value in fields.items()
    ]
    if with_image:
        for name in ("image", "files"):
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="q.jpg"\r\n'
                f"Content-Type: image/jpeg\r\n\r\n".encode()
                + IMAGE
                + b"\r\n"
            )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@st.composite
def raw_requests(draw: st.DrawFn) -> tuple[str, str, dict[str, str], bytes]:
    """A route's request with one or more parts spoiled: method, path segment, query, headers, body."""
    method, route, fields = draw(st.sampled_from(ROUTES))
    if draw(st.integers(0, 9)) == 0:
        method = draw(st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"]))
    path = route.format(draw(text_values)) if "{}" in route else route
    values = dict(fields)
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=3)):  # spoil or add some fields
        values[name] = draw(json_texts if method == "POST" else text_values)
    headers = {
        name: value
        for name, value in draw(
            st.dictionaries(
                st.sampled_from(HEADER_NAMES),
                st.one_of(
                    st.sampled_from(CONTENT_TYPES + ["bytes=0-1", "bytes=-5", "bytes=9-1,0-", "0", "-1", "99" * 12]),
                    st.text(st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"), max_size=30),
                ),
                max_size=3,
            )
        ).items()
    }  # fmt: skip
    body = b""
    if method != "POST":
        if values:
            path += "?" + "&".join(f"{name}={value}" for name, value in values.items())
    else:
        kind = draw(st.sampled_from(["object", "object", "object", "json", "bytes", "multipart", "none"]))
        if kind == "object":
            body = (
                "{" + ", ".join(f"{json.dumps(name)}: {value}" for name, value in values.items()) + "}"
            ).encode()
            headers.setdefault("content-type", "application/json")
        elif kind == "json":
            body = draw(json_texts).encode()
        elif kind == "bytes":
            body = draw(st.binary(max_size=200))
        elif kind == "multipart":
            plain = {name: value.strip('"') for name, value in values.items()}
            body, headers["content-type"] = multipart(plain, draw(st.booleans()))
    return method, path, headers, body


def test_any_method_path_header_and_body_never_gets_a_5xx(api: TestClient) -> None:
    @RAW
    @given(request=raw_requests())
    def check(request: tuple[str, str, dict[str, str], bytes]) -> None:
        method, path, headers, body = request
        headers.pop("content-length", None) if body else None  # httpx sets it from the body
        raw = {name: value.encode("latin-1") for name, value in headers.items()}  # as they travel
        response = api.request(method, path, headers=raw, content=body or None)
        no_server_error(response, f"{method} {path} {headers} {body[:200]!r}")

    check()


def test_the_two_500s_of_the_issue_are_4xx(api: TestClient) -> None:
    long_k = b'{"text": "a", "k": ' + b"9" * 5000 + b"}"
    answer = api.post("/search", content=long_k, headers={"content-type": "application/json"})
    assert answer.status_code == 422 and "5000 characters" in answer.json()["detail"]
    for flag in ("99999999999999999999999", "-99999999999999999999999", str(2**63), "9" * 5000):
        answer = api.post(f"/flags/{flag}/review", json={"decision": "dismiss", "by": "fuzz"})
        assert answer.status_code == 422, (flag, answer.text)
    assert api.post(f"/flags/{2**63 - 1}/review", json={"decision": "dismiss", "by": "a"}).status_code == 404
    for offset in (str(2**63), "9" * 30):
        assert api.get("/flags", params={"offset": offset}).status_code == 422
    assert api.get("/flags", params={"offset": 2**63 - 1}).json()["flags"] == []
    for constant in (b"NaN", b"Infinity", b"-Infinity"):
        body = b'{"text": "a", "min_score": ' + constant + b"}"
        assert (
            api.post("/search", content=body, headers={"content-type": "application/json"}).status_code == 400
        )
