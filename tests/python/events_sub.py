#!/usr/bin/python3
"""A real pyzmq SUB subscriber for lavabox's publisher tests.

Usage: events_sub.py ENDPOINT COUNT

Subscribes to everything. The first `.worker` message (the test's readiness probe, sent
until it arrives) is printed as `ready <frames as JSON>`; later worker probes are skipped.
Then prints the next COUNT non-worker messages, one JSON array of frames per line, and
exits. Exits 2 if nothing arrives for 20 s.
"""
import json
import sys

import zmq


def main():
    endpoint, count = sys.argv[1], int(sys.argv[2])
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.RCVTIMEO, 20000)
    sub.connect(endpoint)
    ready = False
    got = 0
    while got < count:
        try:
            frames = sub.recv_multipart()
        except zmq.Again:
            print("timeout", flush=True)
            return 2
        text = [f.decode("utf-8") for f in frames]
        if text[0].endswith(".worker"):
            if not ready:
                print("ready " + json.dumps(text), flush=True)
                ready = True
            continue
        print(json.dumps(text), flush=True)
        got += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
