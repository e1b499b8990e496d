"""SMTP catcher (port 1025) with Mailpit's `GET /api/v1/messages` (8025)."""

import email
import email.policy
import email.utils
import threading
import time
import uuid

from aiosmtpd.controller import Controller

from standin_http import serve_json

LOCK = threading.Lock()
MESSAGES = []


def address(value):
    name, addr = email.utils.parseaddr(value)
    return {"Name": name, "Address": addr}


class Catcher:
    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain", "html"))
        summary = {
            "ID": str(uuid.uuid4()),
            "From": address(message.get("From", envelope.mail_from)),
            "To": [address(a) for a in envelope.rcpt_tos],
            "Subject": str(message.get("Subject", "")),
            "Created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "Size": len(envelope.content),
            "Snippet": (body.get_content() if body else "")[:250],
        }
        with LOCK:
            MESSAGES.insert(0, summary)
        return "250 OK"


def messages(path):
    """Mailpit's `/api/v1/messages`: the summaries, newest first."""
    if path != "/api/v1/messages":
        return None
    with LOCK:
        return {"total": len(MESSAGES), "unread": len(MESSAGES), "count": len(MESSAGES),
                "start": 0, "messages": list(MESSAGES)}


def main():
    controller = Controller(Catcher(), hostname="0.0.0.0", port=1025)
    controller.start()
    print("SMTP on :1025, /api/v1/messages on :8025", flush=True)
    serve_json(8025, messages)


if __name__ == "__main__":
    main()
