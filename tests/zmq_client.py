#!/usr/bin/env python3
"""The seed's documented event client (LAVA's `zmq_client.py` example of the releases before
state and health), ported to Python 3 and otherwise as written: it looks the publisher up
over XML-RPC (`scheduler.get_publisher_event_socket`), subscribes to everything and waits for
the job's message whose legacy `status` is a finished one, then prints that message's data.

The one change beyond the port: `--hostname` may carry a port (`127.0.0.1:8000`), which the
original, written for a server on port 80, would have glued to the publisher's port.

usage: zmq_client.py --hostname HOST[:PORT] --job-id ID --timeout SECONDS
"""

import argparse
import json
import signal
import sys
import xmlrpc.client
from urllib.parse import urlsplit

import yaml
import zmq

FINISHED_JOB_STATUS = ["Complete", "Incomplete", "Canceled"]


class JobEndTimeoutError(Exception):
    """Raise when the specified job does not finish in certain timeframe."""


class Timeout:
    """Timeout error class with ALARM signal. Accepts time in seconds."""

    class TimeoutError(Exception):
        pass

    def __init__(self, sec=0):
        self.sec = sec

    def __enter__(self):
        signal.signal(signal.SIGALRM, self.timeout_raise)
        signal.alarm(self.sec or 0)

    def __exit__(self, *args):
        signal.alarm(0)

    def timeout_raise(self, *args):
        raise Timeout.TimeoutError()


class JobListener:
    def __init__(self, url):
        self.context = zmq.Context.instance()
        self.sock = self.context.socket(zmq.SUB)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.connect(url)

    def wait_for_job_end(self, job_id, timeout=None):
        try:
            with Timeout(timeout):
                while True:
                    msg = self.sock.recv_multipart()
                    try:
                        (topic, uuid, dt, username, data) = msg[:]
                    except ValueError:
                        # Dropping invalid message
                        continue
                    data = yaml.safe_load(data)
                    if "job" in data:
                        if data["job"] == job_id:
                            if data["status"] in FINISHED_JOB_STATUS:
                                return data
        except Timeout.TimeoutError:
            raise JobEndTimeoutError("JobListener timed out after %s seconds." % timeout)


def lookup_publisher(hostname):
    """Lookup the publisher details using XML-RPC on the specified hostname."""
    server = xmlrpc.client.ServerProxy("http://%s/RPC2" % hostname)
    socket = server.scheduler.get_publisher_event_socket()
    port = urlsplit(socket).port
    host = urlsplit("http://%s" % hostname).hostname
    listener_url = "tcp://%s:%s" % (host, port)
    print("Using %s" % listener_url, file=sys.stderr)
    return listener_url


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-j", "--job-id", type=int, help="Job ID to wait for")
    parser.add_argument("-t", "--timeout", type=int, help="Timeout in seconds")
    parser.add_argument("--hostname", required=True, help="hostname of the instance")
    options = parser.parse_args()

    publisher = lookup_publisher(options.hostname)
    listener = JobListener(publisher)
    # Ready to receive: the caller may start the job now.
    print("listening", file=sys.stderr, flush=True)
    if options.job_id:
        print(json.dumps(listener.wait_for_job_end(options.job_id, options.timeout)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
