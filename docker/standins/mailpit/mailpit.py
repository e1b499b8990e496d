"""SMTP catcher (port 1025) with Mailpit's `GET /api/v1/messages` (8025)."""

import email
import email.policy
import email.utils
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller

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


class Api(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.split("?")[0] != "/api/v1/messages":
            self.send_error(404)
            return
        with LOCK:
            body = {"total": len(MESSAGES), "unread": len(MESSAGES), "count": len(MESSAGES),
                    "start": 0, "messages": list(MESSAGES)}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def main():
    controller = Controller(Catcher(), hostname="0.0.0.0", port=1025)
    controller.start()
    print("SMTP on :1025, /api/v1/messages on :8025", flush=True)
    ThreadingHTTPServer(("0.0.0.0", 8025), Api).serve_forever()


if __name__ == "__main__":
    main()
