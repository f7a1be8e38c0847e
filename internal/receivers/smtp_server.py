"""SMTP server for notify's tests: aiosmtpd (Debian's python3-aiosmtpd).

usage: /usr/bin/python3 smtp_server.py MODE PORT USER PASS CERT KEY OUT.jsonl LIFETIME

MODE starttls: STARTTLS required, then AUTH (PLAIN or LOGIN) required.
MODE smtps:    TLS from the first byte (implicit TLS), AUTH required.
MODE plain:    no TLS offered, no AUTH.

Each AUTH attempt and each message is one JSON line in OUT.jsonl:
{"auth": MECHANISM, "user": ..., "ok": bool} and {"from": ..., "to": [...],
"tls": bool, "user": ..., "mechanism": ..., "data": MESSAGE}.
The server stops on SIGTERM or SIGINT, and by itself after LIFETIME seconds.
After peers/README.md's smtp_auth.py recipe.
"""
import json
import signal
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

mode, port, user, pw, cert, key, out, lifetime = sys.argv[1:9]
# SIGTERM and SIGINT are waited for with sigtimedwait, not handled: a
# handler that sets a threading.Event deadlocks when a second signal comes
# while it runs (Event.set takes a plain Lock), as it does when a test
# signals the process group and timeout(1) forwards the signal too. The
# mask is set before any thread starts, so every thread inherits it.
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
lock = threading.Lock()


def record(rec):
    with lock, open(out, "a") as f:
        f.write(json.dumps(rec) + "\n")


def auth(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (user.encode(), pw.encode())
    login = data.login.decode("utf8", "replace") if isinstance(data, LoginPassword) else None
    record({"auth": mechanism, "user": login, "ok": ok})
    if ok:
        session.flowhouse_mechanism = mechanism
    return AuthResult(success=ok, handled=False, auth_data=data)


class Sink:
    async def handle_DATA(self, server, session, envelope):
        record({
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            # session.ssl is set by STARTTLS only; implicit TLS shows in the transport.
            "tls": session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None,
            "user": session.auth_data.login.decode() if session.authenticated else None,
            "mechanism": getattr(session, "flowhouse_mechanism", None),
            "data": envelope.content.decode("utf8", "replace"),
        })
        return "250 OK"


tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
tls.load_cert_chain(cert, key)
if mode == "starttls":
    c = Controller(Sink(), hostname="127.0.0.1", port=int(port), tls_context=tls, require_starttls=True,
                   authenticator=auth, auth_required=True, auth_require_tls=True)
elif mode == "smtps":
    # aiosmtpd 1.4.3 counts only STARTTLS as TLS for auth_require_tls: with
    # it, an implicit-TLS server never offers AUTH. The connection is TLS
    # from the first byte anyway.
    c = Controller(Sink(), hostname="127.0.0.1", port=int(port), ssl_context=tls,
                   authenticator=auth, auth_required=True, auth_require_tls=False)
elif mode == "plain":
    c = Controller(Sink(), hostname="127.0.0.1", port=int(port))
else:
    sys.exit("unknown mode " + mode)
c.start()
print(f"listening 127.0.0.1:{port} ({mode})", flush=True)
signal.sigtimedwait({signal.SIGTERM, signal.SIGINT}, float(lifetime))
c.stop()
