"""A webhook receiver for the system test, run inside the container (stdlib only).

    python3 hook_receiver.py SECRET_FILE OUT_JSONL PORT

Checks each delivery's Standard Webhooks signature with the secret and appends
``{"signed_ok": bool, "subjects": [...]}`` to OUT_JSONL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import sys
from pathlib import Path


def signature_ok(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Whether one of ``webhook-signature``'s v1 signatures is the body's HMAC."""
    key = base64.b64decode(secret.strip().removeprefix("whsec_"))
    signed = f"{headers.get('webhook-id', '')}.{headers.get('webhook-timestamp', '')}.".encode()
    want = base64.b64encode(hmac.new(key, signed + body, hashlib.sha256).digest()).decode()
    given = [s.split(",", 1)[1] for s in headers.get("webhook-signature", "").split() if "," in s]
    return any(hmac.compare_digest(want, g) for g in given)


def main() -> None:
    """Serve on 127.0.0.1:PORT until killed."""
    secret_path, out_path, port = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            doc = json.loads(body)
            events = doc if isinstance(doc, list) else [doc]
            record = {
                "signed_ok": signature_ok(secret_path.read_text(), headers, body),
                "subjects": [e.get("subject") for e in events],
            }
            with out_path.open("a") as out:
                out.write(json.dumps(record) + "\n")
            self.send_response(204)
            self.end_headers()

        def do_GET(self) -> None:
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    http.server.ThreadingHTTPServer(("127.0.0.1", port), Hook).serve_forever()


if __name__ == "__main__":
    main()
