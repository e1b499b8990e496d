"""An SMTP handler for email-service's tests, run by aiosmtpd:

    PYTHONPATH=<this directory> python3 -m aiosmtpd -n -l 127.0.0.1:PORT \
        -c picky_smtp.Handler MAILDIR

Refuses recipients by the start of their local part: `gone...` for good
(550), `later...` for now (451). Keeps every other mail, raw, as one file in
MAILDIR/new, its first line `X-Rcpt-To: <recipients>`.
"""
import os
import uuid


class Handler:
    def __init__(self, maildir):
        self.maildir = maildir
        os.makedirs(os.path.join(maildir, "new"), exist_ok=True)

    @classmethod
    def from_cli(cls, parser, *args):
        if len(args) != 1:
            parser.error("picky_smtp.Handler takes one argument: the mail directory")
        return cls(args[0])

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0]
        if local.startswith("gone"):
            return "550 5.1.1 <%s>: no such mailbox" % address
        if local.startswith("later"):
            return "451 4.7.1 <%s>: try again later" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        name = uuid.uuid4().hex
        temporary = os.path.join(self.maildir, name)
        with open(temporary, "wb") as mail:
            mail.write(("X-Rcpt-To: %s\r\n" % ", ".join(envelope.rcpt_tos)).encode("utf-8"))
            mail.write(envelope.original_content or envelope.content)
        os.rename(temporary, os.path.join(self.maildir, "new", name))
        return "250 OK"
