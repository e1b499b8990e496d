"""What the Python stand-ins share: their read-only JSON API over HTTP."""

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve_json(port, answer):
    """Serves `GET` on 0.0.0.0:`port` for ever: `answer(path)` (the path
    without its query string) gives the body, as JSON; None is a 404."""

    class Api(BaseHTTPRequestHandler):
        def do_GET(self):
            body = answer(self.path.split("?")[0])
            if body is None:
                self.send_error(404)
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("0.0.0.0", port), Api).serve_forever()
