"""Standard Webhooks signatures: the specification's published vector, a vector computed here
by hand with hmac/base64 (not with ``sign``), and messages that must not verify."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

import pytest

from preread.webhooks.signing import (
    HEADER_ID,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    SignatureError,
    new_secret,
    secret_key,
    sign,
    signed_headers,
    verify,
)

# The test vector published with the Standard Webhooks specification (and Svix's docs):
# https://www.standardwebhooks.com — the same values appear in every conforming library's tests.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode()
MSG_ID = "msg_0123456789abcdef"
TIMESTAMP = 1740816000  # 2025-03-01T08:00:00Z
BODY = b'{"data":{"job_id":"j1"},"type":"preread.completed"}'
NOW = datetime.fromtimestamp(TIMESTAMP, UTC)


def by_hand(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The signature computed independently of the module under test."""
    signed = msg_id.encode() + b"." + str(timestamp).encode() + b"." + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def headers(signature: str, *, msg_id: str = MSG_ID, timestamp: int = TIMESTAMP) -> dict[str, str]:
    return {HEADER_ID: msg_id, HEADER_TIMESTAMP: str(timestamp), HEADER_SIGNATURE: signature}


def test_sign_reproduces_the_specification_vector() -> None:
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    spec_now = datetime.fromtimestamp(SPEC_TIMESTAMP, UTC)
    spec_headers = headers(SPEC_SIGNATURE, msg_id=SPEC_ID, timestamp=SPEC_TIMESTAMP)
    verify(SPEC_SECRET, spec_headers, SPEC_BODY, now=spec_now)


def test_sign_matches_a_signature_computed_by_hand() -> None:
    expected = by_hand(KEY, MSG_ID, TIMESTAMP, BODY)
    assert sign(SECRET, MSG_ID, TIMESTAMP, BODY) == expected
    assert signed_headers(SECRET, MSG_ID, TIMESTAMP, BODY) == headers(expected)


def test_verify_accepts_a_hand_made_signature_with_any_header_case() -> None:
    mixed = {k.title(): v for k, v in headers(by_hand(KEY, MSG_ID, TIMESTAMP, BODY)).items()}
    verify(SECRET, mixed, BODY, now=NOW)


def test_verify_accepts_any_of_several_signatures() -> None:
    good = by_hand(KEY, MSG_ID, TIMESTAMP, BODY)
    other = by_hand(b"another key of a rotated secret", MSG_ID, TIMESTAMP, BODY)
    verify(SECRET, headers(f"{other} v1a,c29tZXRoaW5n {good}"), BODY, now=NOW)


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda h, b: (h, b + b" "), "no matching v1 signature"),
        (lambda h, b: ({**h, HEADER_ID: "msg_other"}, b), "no matching v1 signature"),
        (lambda h, b: ({**h, HEADER_TIMESTAMP: str(TIMESTAMP + 1)}, b), "no matching"),
        (lambda h, b: ({**h, HEADER_SIGNATURE: "v2," + h[HEADER_SIGNATURE][3:]}, b), "no match"),
        (lambda h, b: ({**h, HEADER_SIGNATURE: h[HEADER_SIGNATURE][:-4] + "AAA="}, b), "no match"),
        (
            lambda h, b: ({k: v for k, v in h.items() if k != HEADER_ID}, b),
            "missing header webhook-id",
        ),
        (lambda h, b: ({**h, HEADER_SIGNATURE: " "}, b), "missing header webhook-signature"),
        (lambda h, b: ({**h, HEADER_TIMESTAMP: "yesterday"}, b), "is not a Unix time"),
    ],
    ids=["body", "id", "timestamp", "version", "signature", "no-id", "blank-sig", "bad-time"],
)
def test_tampered_messages_are_refused(tamper, message) -> None:
    good = headers(by_hand(KEY, MSG_ID, TIMESTAMP, BODY))
    bad_headers, bad_body = tamper(good, BODY)
    with pytest.raises(SignatureError, match=message):
        verify(SECRET, bad_headers, bad_body, now=NOW)


def test_the_wrong_secret_is_refused() -> None:
    signed = headers(by_hand(KEY, MSG_ID, TIMESTAMP, BODY))
    with pytest.raises(SignatureError, match="no matching v1 signature"):
        verify(new_secret(), signed, BODY, now=NOW)


@pytest.mark.parametrize(("offset", "word"), [(-301, "too old"), (301, "too new")])
def test_timestamps_outside_the_tolerance_are_refused(offset: int, word: str) -> None:
    stamp = TIMESTAMP + offset
    signed = headers(by_hand(KEY, MSG_ID, stamp, BODY), timestamp=stamp)
    with pytest.raises(SignatureError, match=f"webhook-timestamp is {word}: 301 s"):
        verify(SECRET, signed, BODY, now=NOW)
    verify(SECRET, signed, BODY, now=NOW, tolerance_s=301)


def test_new_secrets_are_32_random_bytes_in_base64() -> None:
    first, second = new_secret(), new_secret()
    assert first.startswith("whsec_") and first != second
    assert len(base64.b64decode(first.removeprefix("whsec_"), validate=True)) == 32
    assert secret_key(first) == secret_key(first.removeprefix("whsec_"))


def test_a_secret_that_is_not_base64_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="not base64"):
        sign("whsec_not*base64", MSG_ID, TIMESTAMP, BODY)


def test_the_package_exports_its_public_names() -> None:
    import preread.webhooks

    assert sorted(preread.webhooks.__all__) == sorted(set(preread.webhooks.__all__))
    for name in preread.webhooks.__all__:
        assert getattr(preread.webhooks, name) is not None
