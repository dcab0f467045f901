#!/usr/bin/python3
"""The classic LAVA client: submit a job, then wait on the event socket for its end.

Usage: submit_and_wait.py RPC_URL JOB_FILE PROBE_DEVICE

Asks the server for its event socket (scheduler.get_publisher_event_socket), replaces `*`
with the server's host as lavacli does, subscribes to everything, submits JOB_FILE and
prints every event (one JSON array of the five frames per line) until the job's own
`.testjob` Finished event, then `end <job id> <health>`.

A SUB socket only sees what is published after its subscription reached the publisher
(ZMQ's slow joiner), so before submitting, the script toggles PROBE_DEVICE between
maintenance and online until one of its `.device` events arrives; probe events are not
printed. Exits 2 if the server falls silent for 60 s.
"""
import json
import sys
import time
import urllib.parse
import xmlrpc.client

import zmq


def frames_of(sub):
    text = [f.decode("utf-8") for f in sub.recv_multipart()]
    return text, json.loads(text[4])


def main():
    url, job_file, probe = sys.argv[1], sys.argv[2], sys.argv[3]
    server = xmlrpc.client.ServerProxy(url, allow_none=True)
    socket_url = server.scheduler.get_publisher_event_socket()
    socket_url = socket_url.replace("*", urllib.parse.urlparse(url).hostname)

    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(socket_url)

    # Readiness probe, not a sleep: each toggle is a real device event; the first one seen
    # proves the subscription is live. The deadline is only a safety net.
    sub.setsockopt(zmq.RCVTIMEO, 200)
    deadline = time.monotonic() + 30
    maintenance = True
    while True:
        if maintenance:
            server.scheduler.put_into_maintenance_mode(probe, "probe")
        else:
            server.scheduler.put_into_online_mode(probe, "probe")
        maintenance = not maintenance
        try:
            _, data = frames_of(sub)
        except zmq.Again:
            if time.monotonic() > deadline:
                print("no probe event", flush=True)
                return 3
            continue
        if data.get("device") == probe:
            break
    print("ready", flush=True)

    job_id = server.scheduler.submit_job(open(job_file).read())
    sub.setsockopt(zmq.RCVTIMEO, 60000)
    while True:
        try:
            text, data = frames_of(sub)
        except zmq.Again:
            print("timeout", flush=True)
            return 2
        if text[0].endswith(".device") and data.get("device") == probe:
            continue
        print(json.dumps(text), flush=True)
        if (
            text[0].endswith(".testjob")
            and data.get("job") == job_id
            and data.get("state") == "Finished"
        ):
            print("end %s %s" % (job_id, data.get("health")), flush=True)
            return 0


if __name__ == "__main__":
    sys.exit(main())
