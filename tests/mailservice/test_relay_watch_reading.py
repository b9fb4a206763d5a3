"""What the relay watch reads from Postfix, as Postfix 3.7 wrote it (recorded on this box)."""

from __future__ import annotations

from pathlib import Path

from mailservice.relaywatch import Relay, notice_parse, queue_parse, waiting_words

# `postqueue -j` while the ISP refused the relay login, then while the message was retried.
DEFERRED = (
    '{"queue_name": "deferred", "queue_id": "E6F382379D1", "arrival_time": 1796290031, '
    '"message_size": 341, "forced_expire": false, "sender": "support@example.com", '
    '"recipients": [{"address": "partner@outside.test", "delay_reason": "SASL authentication '
    "failed; server localhost[127.0.0.1] said: 535 5.7.8 Error: authentication failed: "
    '(reason unavailable)"}]}\n'
)
JUST_ARRIVED = (
    '{"queue_name": "active", "queue_id": "E6F382379D2", "arrival_time": 1796290031, '
    '"message_size": 341, "forced_expire": false, "sender": "support@example.com", '
    '"recipients": [{"address": "partner@outside.test"}]}\n'
)
OWN_BOUNCE = (
    '{"queue_name": "deferred", "queue_id": "E6F382379D3", "arrival_time": 1796290031, '
    '"message_size": 2418, "forced_expire": false, "sender": "", '
    '"recipients": [{"address": "support@example.com", "delay_reason": "lmtp down"}]}\n'
)
NOTICES = Path(__file__).parent / "notices"


def test_it_reads_a_deferred_recipient_with_its_reason():
    [waiting] = queue_parse(DEFERRED + JUST_ARRIVED + OWN_BOUNCE)
    assert waiting.queue_id == "E6F382379D1"
    assert waiting.sender == "support@example.com"
    assert waiting.recipient == "partner@outside.test"
    assert waiting.reason.startswith("SASL authentication failed")
    assert waiting.arrived.timestamp() == 1796290031


def test_it_skips_a_line_that_is_not_json():
    assert len(queue_parse("postqueue: warning: something\n" + DEFERRED)) == 1


def test_it_reads_who_a_bounce_was_returned_to_and_why():
    returned = notice_parse((NOTICES / "postmaster-copy-of-a-bounce.eml").read_bytes())
    assert returned is not None
    assert returned.sender == "support@example.com"
    assert returned.recipients == ("refused@outside.test",)
    assert returned.reason.startswith("554 5.1.1 <refused@outside.test>: Recipient address")
    assert "does not exist at the ISP" in returned.reason


def test_it_ignores_a_notice_that_is_not_a_bounce():
    transcript = (
        b"From: Mail Delivery System <MAILER-DAEMON@localhost>\r\n"
        b"Subject: Postfix SMTP server: errors from unknown[192.0.2.9]\r\n\r\n"
        b"Transcript of session follows.\r\n"
    )
    assert notice_parse(transcript) is None


def test_it_words_a_refused_relay_login_for_an_administrator():
    [waiting] = queue_parse(DEFERRED)
    words = waiting_words(waiting.reason, Relay("isp-support-7731", "smtp.isp.example", 587), 2)
    assert words.startswith("The ISP refused the relay login of isp-support-7731 (535 5.7.8")
    assert "mail to the outside waits in the queue" in words
    assert "Outgoing relay" in words
    assert words.endswith("2 messages wait.")


def test_it_words_a_server_that_refuses_connections():
    reason = (
        "delivery temporarily suspended: connect to smtp.isp.example[192.0.2.7]:587: "
        "Connection refused"
    )
    words = waiting_words(reason, Relay("isp-support-7731", "smtp.isp.example", 587), 1)
    assert words.startswith("The ISP's SMTP server smtp.isp.example:587 refused the connection")
    assert words.endswith("1 message waits.")
