#!/usr/bin/env python3
"""A real SMTP server for the integration tests, built on aiosmtpd.

It listens on 127.0.0.1 (a free port, printed as "READY <port>" once it
accepts connections) and writes each accepted message into OUTDIR as
NNNN.eml (the bytes received after DATA) and NNNN.json (the envelope, the
session's TLS and login, and the message parsed by Python's email package:
decoded subject, headers and body). The JSON file appears last, atomically.

Options make it behave like the servers users meet: STARTTLS offered and
required, implicit TLS, AUTH required with one valid login, a reply delayed
past the client's timeout, and the first N messages refused with a
transient 451.
"""

import argparse
import asyncio
import email
import email.policy
import json
import os
import socket
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Sink:
    def __init__(self, args):
        self.outdir = args.outdir
        self.delay = args.delay
        self.refuse = args.refuse_first
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.refuse > 0:
            self.refuse -= 1
            return "451 4.3.0 Try again later"
        self.count += 1
        raw = envelope.original_content or envelope.content
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        body = parsed.get_body(preferencelist=("plain",))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": session.ssl is not None
            or server.transport.get_extra_info("ssl_object") is not None,
            "login": session.auth_data.login.decode()
            if isinstance(session.auth_data, LoginPassword)
            else None,
            "subject": str(parsed["subject"]),
            "headers": {k: str(v) for k, v in parsed.items()},
            "content_type": parsed.get_content_type(),
            "charset": parsed.get_content_charset(),
            "body": body.get_content() if body is not None else None,
        }
        stem = os.path.join(self.outdir, f"{self.count:04d}")
        with open(stem + ".eml", "wb") as f:
            f.write(raw)
        with open(stem + ".json.tmp", "w", encoding="utf-8") as f:
            json.dump(record, f, ensure_ascii=False)
        os.rename(stem + ".json.tmp", stem + ".json")
        return "250 2.0.0 OK: queued as test-%04d" % self.count


def authenticator(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    return check


def main():
    p = argparse.ArgumentParser()
    p.add_argument("outdir")
    p.add_argument("--cert", help="PEM certificate chain of the server")
    p.add_argument("--key", help="PEM private key of the server")
    p.add_argument("--implicit-tls", action="store_true", help="TLS from the first byte (smtps)")
    p.add_argument("--require-starttls", action="store_true")
    p.add_argument("--auth", help="USER:PASSWORD that must log in")
    p.add_argument("--auth-without-tls", action="store_true", help="offer AUTH on plain text")
    p.add_argument("--delay", type=float, default=0, help="seconds before answering DATA")
    p.add_argument("--refuse-first", type=int, default=0, help="answer 451 to the first N messages")
    args = p.parse_args()

    context = None
    if args.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)

    kwargs = {"hostname": "sink.test", "enable_SMTPUTF8": True}
    if context is not None and not args.implicit_tls:
        kwargs["tls_context"] = context
        kwargs["require_starttls"] = args.require_starttls
    if args.auth:
        user, password = args.auth.split(":", 1)
        kwargs["authenticator"] = authenticator(user, password)
        kwargs["auth_required"] = True
        kwargs["auth_require_tls"] = not args.auth_without_tls

    handler = Sink(args)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server_ssl = context if args.implicit_tls else None
    loop.run_until_complete(
        loop.create_server(lambda: SMTP(handler, **kwargs), sock=sock, ssl=server_ssl)
    )
    print(f"READY {port}", flush=True)
    try:
        loop.run_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
