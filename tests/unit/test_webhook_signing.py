"""The webhook signature: HMAC-SHA256 over "timestamp.body" with the shared secret; what a receiver
refuses (a changed body or timestamp, another secret, an old request); which URLs can be configured."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from lookalike.config import load_settings
from lookalike.errors import ConfigError
from lookalike.webhooks import SignatureError, sign, verify
from lookalike.webhooks.signing import check_targets

SECRET = "whsec-test-0123456789"
BODY = b'{"id":1,"type":"flag.created"}'


def test_a_signed_body_verifies_and_the_signature_is_the_documented_hmac() -> None:
    headers = sign(SECRET, BODY, event="flag.created", delivery="1", now=1_700_000_000)
    assert headers["X-Lookalike-Timestamp"] == "1700000000"
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert headers["X-Lookalike-Signature"] == f"v1={expected}"
    assert headers["X-Lookalike-Event"] == "flag.created" and headers["X-Lookalike-Delivery"] == "1"
    lower = {key.lower(): value for key, value in headers.items()}
    assert verify(SECRET, BODY, lower, now=1_700_000_100) == 1_700_000_000


@pytest.mark.parametrize(
    ("secret", "body", "change", "now", "reason"),
    [
        ("another-secret", BODY, {}, 1_700_000_000, "does not match"),
        (SECRET, BODY + b" ", {}, 1_700_000_000, "does not match"),
        (SECRET, BODY, {"X-Lookalike-Timestamp": "1700000001"}, 1_700_000_000, "does not match"),
        (SECRET, BODY, {}, 1_700_000_301, "replay"),  # captured and sent again later
        (SECRET, BODY, {}, 1_699_999_000, "replay"),
        (SECRET, BODY, {"X-Lookalike-Timestamp": ""}, 1_700_000_000, "malformed"),
        (SECRET, BODY, {"X-Lookalike-Timestamp": "1e9"}, 1_700_000_000, "malformed"),
        (SECRET, BODY, {"X-Lookalike-Signature": ""}, 1_700_000_000, "does not match"),
    ],
)
def test_a_receiver_refuses_what_does_not_check_out(
    secret: str, body: bytes, change: dict[str, str], now: int, reason: str
) -> None:
    headers = {**sign(SECRET, BODY, event="ping", delivery="9", now=1_700_000_000), **change}
    with pytest.raises(SignatureError, match=reason):
        verify(secret, body, headers, now=now)


def test_webhook_urls_need_a_secret_and_a_plain_http_url() -> None:
    assert check_targets((), "") == ()
    assert check_targets(("http://10.0.0.5/h", "https://shop.example/h", "http://10.0.0.5/h"), "s") == (
        "http://10.0.0.5/h",
        "https://shop.example/h",
    )
    for urls, secret, reason in [
        (("http://shop.example/h",), "", "SECRET"),
        (("ftp://shop.example/h",), "s", "http"),
        (("http:///h",), "s", "http"),
        (("http://user:pw@shop.example/h",), "s", "user name"),
        (("http://shop.example/h#x",), "s", "fragment"),
        (("http://shop.example:99999/h",), "s", "not a valid URL"),
        (tuple(f"http://h{n}.example/" for n in range(21)), "s", "at most 20"),
    ]:
        with pytest.raises(ValueError, match=reason):
            check_targets(urls, secret)
    settings = load_settings(webhook_urls="http://a.example/h, http://b.example/h", webhook_secret="s")
    assert settings.webhook_targets() == ("http://a.example/h", "http://b.example/h")
    with pytest.raises(ConfigError, match="SECRET"):
        load_settings(webhook_urls="http://a.example/h").webhook_targets()
