"""Smart HTTP git server for the testdef tests: Debian's git-http-backend as CGI behind
Python's http.server. Prints its port on the first line of stdout once it listens, and
appends one line per request to the log file given as argv[2]:
"<METHOD> <path> fetch=<0|1>", fetch=1 when the request asks for objects (protocol v2
"command=fetch", or v0/v1 "want" lines), so a test can tell a clone from an up-to-date fetch.
"""
import http.server
import os
import subprocess
import sys

ROOT = sys.argv[1]
LOG = sys.argv[2]
BACKEND = "/usr/lib/git-core/git-http-backend"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def run(self, body):
        path, _, query = self.path.partition("?")
        env = dict(os.environ)
        env.update(
            GIT_PROJECT_ROOT=ROOT,
            GIT_HTTP_EXPORT_ALL="1",
            PATH_INFO=path,
            QUERY_STRING=query,
            REQUEST_METHOD=self.command,
            CONTENT_TYPE=self.headers.get("Content-Type", ""),
            CONTENT_LENGTH=str(len(body)),
            REMOTE_ADDR="127.0.0.1",
            SERVER_PROTOCOL="HTTP/1.0",
        )
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        if self.headers.get("Content-Encoding") == "gzip":
            env["HTTP_CONTENT_ENCODING"] = "gzip"
        wants = b"command=fetch" in body or b"want " in body
        if self.headers.get("Content-Encoding") == "gzip":
            import gzip
            try:
                plain = gzip.decompress(body)
                wants = b"command=fetch" in plain or b"want " in plain
            except OSError:
                pass
        with open(LOG, "a") as log:
            log.write("%s %s fetch=%d\n" % (self.command, path, 1 if wants else 0))
        out = subprocess.run([BACKEND], input=body, env=env, capture_output=True).stdout
        head, _, rest = out.partition(b"\r\n\r\n")
        if not rest and b"\n\n" in out:
            head, _, rest = out.partition(b"\n\n")
        status = 200
        headers = []
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                headers.append((key, value.strip()))
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(rest)

    def do_GET(self):
        self.run(b"")

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0") or "0")
        self.run(self.rfile.read(length))


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
