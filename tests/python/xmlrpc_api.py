#!/usr/bin/python3
"""Checks lavabox's XML-RPC API with Python's own xmlrpc.client, as LAVA clients see it.

Run by tests/it/xmlrpc.rs against a freshly seeded server; configuration comes from the
environment (LAVABOX_ADDR, *_TOKEN, FINISHED_JOB, WORKER, QEMU_JOB, PRIVATE_JOB,
MULTINODE_JOB). Prints "ALL OK" when every check passed.
"""

import os
import re as regex
import sys
import xmlrpc.client

import yaml

ADDR = os.environ["LAVABOX_ADDR"]
FINISHED = int(os.environ["FINISHED_JOB"])
# What the job path left for FINISHED (the test reads them from its output.yaml and store).
FINISHED_LOG_LINES = int(os.environ["FINISHED_LOG_LINES"])
FINISHED_CASES = int(os.environ["FINISHED_CASES"])
FINISHED_LAVA_CASES = int(os.environ["FINISHED_LAVA_CASES"])
WORKER = os.environ["WORKER"]
ALICE_EMAIL = os.environ["ALICE_EMAIL"]
QEMU_JOB = os.environ["QEMU_JOB"]
PRIVATE_JOB = os.environ["PRIVATE_JOB"]
MULTINODE_JOB = os.environ["MULTINODE_JOB"]


called = set()


class RecordingTransport(xmlrpc.client.Transport):
    """Notes every method called, so the suite can prove it exercised all of listMethods."""

    def request(self, host, handler, request_body, verbose=False):
        m = regex.search(rb"<methodName>([^<]*)</methodName>", request_body)
        if m:
            called.add(m.group(1).decode())
        return super().request(host, handler, request_body, verbose)


def proxy(user=None):
    if user is None:
        url = "http://%s/RPC2" % ADDR
    else:
        url = "http://%s:%s@%s/RPC2" % (user, os.environ[user.upper() + "_TOKEN"], ADDR)
    return xmlrpc.client.ServerProxy(url, allow_none=True, transport=RecordingTransport())


anon = proxy()
alice = proxy("alice")
bob = proxy("bob")
admin = proxy("admin")
failures = []
checked = []


def check(name, cond, detail=""):
    checked.append(name)
    if not cond:
        failures.append("%s: %s" % (name, detail))


def fault(name, call, code, contains=None):
    try:
        result = call()
    except xmlrpc.client.Fault as f:
        ok = f.faultCode == code and (contains is None or contains in f.faultString)
        check(name, ok, "got fault %r %r" % (f.faultCode, f.faultString))
        return f
    check(name, False, "no fault, got %r" % (result,))
    return None


def is_str_list(v):
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


# --- system.* ---
methods = anon.system.listMethods()
check("listMethods sorted", methods == sorted(methods) and "scheduler.jobs.submit" in methods)
# LAVA 2023.01's exact list (lava_server/urls.py registrations, public routines only).
LAVA_2023_01 = set(os.environ["LAVA_METHODS"].split())
check("listMethods is LAVA 2023.01's", set(methods) == LAVA_2023_01,
      "missing %s, extra %s" % (sorted(LAVA_2023_01 - set(methods)), sorted(set(methods) - LAVA_2023_01)))
check("version", anon.system.version() == "2023.01")
check("api_version", anon.system.api_version() == 2)
check("whoami anon", anon.system.whoami() is None)
check("whoami alice", alice.system.whoami() == "alice")
check("methodHelp unknown", anon.system.methodHelp("nope.x") == "")
check("methodHelp known", isinstance(anon.system.methodHelp("system.version"), str))
check("methodSignature", anon.system.methodSignature("system.version") == "undef")
check("methodSignature unknown", anon.system.methodSignature("x.y") == "")
caps = anon.system.getCapabilities()
check("getCapabilities", set(caps) == {"introspect", "faults_interop", "auth_token"})
cfg = anon.system.master_config()
check("master_config", isinstance(cfg["EVENT_SOCKET"], str) and isinstance(cfg["EVENT_NOTIFICATION"], bool)
      and isinstance(cfg["LOG_SIZE_LIMIT"], int) and isinstance(cfg["EVENT_TOPIC"], str))
mc = anon.system.multicall([
    {"methodName": "system.version", "params": []},
    {"methodName": "nope", "params": []},
    {"methodName": "system.version"},
])
check("multicall", mc[0] == ["2023.01"] and mc[1]["faultCode"] == -32601 and mc[2]["faultCode"] == -32602, repr(mc))
multi = xmlrpc.client.MultiCall(anon)
multi.system.version()
multi.system.api_version()
check("MultiCall helper", list(multi()) == ["2023.01", 2])
fault("no such method", lambda: anon.system.get_master_certificate(), -32601, "No such method: 'system.get_master_certificate'")
fault("job_status gone", lambda: anon.scheduler.job_status(1), -32601)
fault("user_can_view_jobs anon", lambda: anon.system.user_can_view_jobs([1]), 401)
fault("user_can_view_jobs not list", lambda: alice.system.user_can_view_jobs(1), 400)
check("user_can_view_jobs", alice.system.user_can_view_jobs([FINISHED, 999999]) == {str(FINISHED): True})
fault("user_can_view_jobs other", lambda: alice.system.user_can_view_jobs([FINISHED], "bob"), 401)
fault("user_can_view_jobs unknown user", lambda: admin.system.user_can_view_jobs([FINISHED], "nobody"), 404)
dv = alice.system.user_can_view_devices(["qemu01"])
check("user_can_view_devices", dv == {"qemu": [{"qemu01": {"visible": True, "is_pipeline": True, "exclusive": True}}]}, repr(dv))
check("user_can_submit_to_types", alice.system.user_can_submit_to_types(["qemu", "bbb"]) == {"qemu": True, "bbb": False})

# --- submission ---
jid = alice.scheduler.jobs.submit(QEMU_JOB)
check("submit returns int", isinstance(jid, int))
jid2 = alice.scheduler.submit_job(QEMU_JOB)
check("submit_job returns int", isinstance(jid2, int) and jid2 > jid)
mn = alice.scheduler.jobs.submit(MULTINODE_JOB)
check("multinode submit returns sub ids", is_str_list(mn) and len(mn) == 2 and mn[0].endswith(".0") and mn[1].endswith(".1"), repr(mn))
fault("submit anon", lambda: anon.scheduler.jobs.submit(QEMU_JOB), 401, "Authentication with user and token required")
fault("submit bad yaml", lambda: alice.scheduler.jobs.submit("job_name: [unclosed"), 400)
fault("submit schema", lambda: alice.scheduler.jobs.submit("job_name: x\n"), 400)
fault("submit unknown type", lambda: alice.scheduler.jobs.submit(QEMU_JOB.replace("device_type: qemu", "device_type: nosuch")), 400, "Device unavailable: ")
fault("submit no devices", lambda: alice.scheduler.jobs.submit(QEMU_JOB.replace("device_type: qemu", "device_type: bbb")), 400, "Device unavailable: ")
fault("submit unknown tag", lambda: alice.scheduler.jobs.submit(QEMU_JOB + "tags: [nosuch]\n"), 400)
tagged = alice.scheduler.jobs.submit(QEMU_JOB + "tags: [fast]\n")
check("submit with tag", isinstance(tagged, int))
aliased = alice.scheduler.jobs.submit(QEMU_JOB.replace("device_type: qemu", "device_type: qemu-alias"))
check("submit via alias", isinstance(aliased, int) and alice.scheduler.jobs.show(aliased)["device_type"] == "qemu")
big = alice.scheduler.jobs.submit("#" * 2_200_000 + "\n" + QEMU_JOB)
check("submit 2.2 MB job", isinstance(big, int))
try:
    proxy("alice").scheduler.jobs.submit("x" * 2_700_000)
    check("submit too big", False, "accepted")
except xmlrpc.client.ProtocolError as e:
    check("submit too big", e.errcode == 413, repr(e.errcode))
except (BrokenPipeError, ConnectionResetError):
    # The server answered 413 and closed before the client finished sending.
    check("submit too big", True)
re = alice.scheduler.jobs.resubmit(jid)
check("resubmit", isinstance(re, int) and re > jid)
re2 = alice.scheduler.resubmit_job(mn[1])
check("resubmit multinode", is_str_list(re2) and len(re2) == 2)
fault("resubmit unknown", lambda: alice.scheduler.jobs.resubmit(999999), 404, "Job '999999' was not found.")

# --- jobs.show / list / definition / logs ---
show = anon.scheduler.jobs.show(FINISHED)
check("show keys", set(show) == {"id", "description", "device", "device_type", "health_check", "pipeline", "health",
                                  "state", "submitter", "submit_time", "start_time", "end_time", "tags", "visibility",
                                  "failure_comment"}, repr(sorted(show)))
check("show DateTime", all(isinstance(show[k], xmlrpc.client.DateTime) for k in ("submit_time", "start_time", "end_time")))
check("show values", show["id"] == FINISHED and show["state"] == "Finished" and show["health"] == "Complete"
      and show["device"] == "qemu01" and show["visibility"] == "Public" and show["pipeline"] is True)
sub = anon.scheduler.jobs.show(mn[1])
check("show multinode sub id", sub["id"] == mn[1] and sub["start_time"] is None)
fault("show unknown", lambda: anon.scheduler.jobs.show(999999), 404, "Job '999999' was not found.")
fault("show string id", lambda: anon.scheduler.jobs.show("abc"), 404)
check("show string id", anon.scheduler.jobs.show(str(FINISHED))["id"] == FINISHED)
lst = anon.scheduler.jobs.list()
check("list shape", all(set(j) == {"id", "description", "device_type", "health", "state", "submitter"} for j in lst) and len(lst) <= 25)
check("list order", [j["id"] for j in lst if isinstance(j["id"], int)] == sorted([j["id"] for j in lst if isinstance(j["id"], int)], reverse=True))
fin = anon.scheduler.jobs.list("FINISHED", None, 0, 10, 0, True)
check("list verbose", len(fin) == 1 and fin[0]["id"] == FINISHED and isinstance(fin[0]["start_time"], str)
      and "+00:00" in fin[0]["end_time"] and "error_type" in fin[0], repr(fin))
check("list health", all(j["health"] == "Unknown" for j in anon.scheduler.jobs.list(None, "unknown")))
check("list limit", len(anon.scheduler.jobs.list(None, None, 0, 2)) == 2)
fault("list bad state", lambda: anon.scheduler.jobs.list("Bogus"), 400, "Invalid state 'Bogus'")
fault("list bad health", lambda: anon.scheduler.jobs.list(None, "Bogus"), 400, "Invalid health 'Bogus'")
q = anon.scheduler.jobs.queue(["qemu"])
check("queue", all(set(j) == {"id", "description", "requested_device_type", "submitter"} for j in q) and len(q) > 0)
check("definition", anon.scheduler.jobs.definition(jid) == QEMU_JOB)
check("definition multinode", anon.scheduler.jobs.definition(mn[0]) == MULTINODE_JOB)
finished, data = anon.scheduler.jobs.logs(FINISHED)
check("logs finished", finished is True and isinstance(data, xmlrpc.client.Binary))
lines = yaml.safe_load(data.data)
check("logs yaml", isinstance(lines, list) and len(lines) == FINISHED_LOG_LINES and any(l["lvl"] == "target" for l in lines) and "dt" in lines[0], repr(lines))
_, part = anon.scheduler.jobs.logs(FINISHED, 1, 2)
check("logs range", len(yaml.safe_load(part.data)) == 1)
f2, none = anon.scheduler.jobs.logs(jid)
check("logs empty", f2 is False and none.data == b"[]")
out = anon.scheduler.job_output(FINISHED)
check("job_output", isinstance(out, xmlrpc.client.Binary) and b"Linux version" in out.data)
fault("job_output none", lambda: anon.scheduler.job_output(jid), 404, "Job output not found.")
conf = anon.scheduler.jobs.configuration(FINISHED)
check("configuration", isinstance(conf, list) and len(conf) == 5 and isinstance(conf[0], xmlrpc.client.Binary))
fault("configuration not started", lambda: anon.scheduler.jobs.configuration(jid), 404, "has not started yet")
det = anon.scheduler.job_details(FINISHED)
check("job_details", det["status"] == "Complete" and isinstance(det["submit_time"], xmlrpc.client.DateTime)
      and det["absolute_url"] == "/scheduler/job/%d" % FINISHED and det["is_pipeline"] is True)
check("job_health", anon.scheduler.job_health(FINISHED) == {"job_id": FINISHED, "job_health": "Complete"})
check("job_state", anon.scheduler.job_state(FINISHED) == {"job_id": FINISHED, "job_state": "Finished"})
check("job_state multinode", anon.scheduler.job_state(mn[0])["sub_id"] == mn[0])
aj = anon.scheduler.all_jobs()
check("all_jobs", all(isinstance(j, list) and len(j) == 6 for j in aj) and any(j[0] == jid and j[2] == "submitted" for j in aj))
pend = anon.scheduler.pending_jobs_by_device_type()
check("pending_jobs_by_device_type", isinstance(pend["qemu"], int) and pend["qemu"] > 0 and pend["bbb"] == 0)
rj = anon.scheduler.get_recent_jobs_for_device("qemu01", 5)
check("recent jobs device", rj == [{"id": FINISHED, "description": "xmlrpc test job", "status": "Complete"}], repr(rj))
rt = anon.scheduler.get_recent_jobs_for_device_type("qemu", 5)
check("recent jobs type", rt[0]["device"] == "qemu01")
fault("recent jobs negative", lambda: anon.scheduler.get_recent_jobs_for_device("qemu01", -1), 400)
fault("recent jobs unknown", lambda: anon.scheduler.get_recent_jobs_for_device("nope"), 404)

# --- validate ---
check("validate ok", anon.scheduler.jobs.validate(QEMU_JOB) == {})
bad = anon.scheduler.jobs.validate(QEMU_JOB.replace("media: tmpfs", "media: floppy"))
check("validate error", set(bad) == {"path", "msg"} and bad["path"].startswith("["), repr(bad))
check("validate_yaml ok", anon.scheduler.validate_yaml(QEMU_JOB) is None)
fault("validate_yaml bad", lambda: anon.scheduler.validate_yaml("job_name: x"), 400, "Invalid YAML submission")

# --- cancel ---
fault("cancel anon", lambda: anon.scheduler.jobs.cancel(jid2), 401)
fault("cancel by other", lambda: bob.scheduler.jobs.cancel(jid2), 403, "Permission denied.")
check("cancel", alice.scheduler.jobs.cancel(jid2) is True)
s2 = anon.scheduler.jobs.show(jid2)
check("canceled state", s2["state"] == "Finished" and s2["health"] == "Canceled", repr(s2))
check("cancel again", admin.scheduler.cancel_job(jid2) is True)
check("cancel multinode", alice.scheduler.jobs.cancel(mn[0]) is True and anon.scheduler.jobs.show(mn[1])["health"] == "Canceled")
fault("cancel empty", lambda: alice.scheduler.jobs.cancel(""), 400)

# --- private job ---
pj = alice.scheduler.jobs.submit(PRIVATE_JOB)
fault("private show anon", lambda: anon.scheduler.jobs.show(pj), 403, "not available to user 'AnonymousUser'")
fault("private show bob", lambda: bob.scheduler.jobs.show(pj), 403)
check("private show admin", admin.scheduler.jobs.show(pj)["visibility"] == "Personal")
check("private hidden from list", all(j["id"] != pj for j in bob.scheduler.jobs.list()))
check("user_can_view_jobs bob", bob.system.user_can_view_jobs([pj]) == {str(pj): False})

# --- devices ---
devs = anon.scheduler.devices.list()
check("devices.list", [d["hostname"] for d in devs] == ["qemu01", "qemu02"] and set(devs[0]) == {"hostname", "type", "health", "state", "current_job", "pipeline"})
dshow = anon.scheduler.devices.show("qemu01")
check("devices.show", dshow["device_type"] == "qemu" and dshow["tags"] == ["fast"] and dshow["worker"] == WORKER
      and dshow["has_device_dict"] is True and dshow["health"] == "Good" and dshow["state"] == "Idle", repr(dshow))
fault("devices.show unknown", lambda: anon.scheduler.devices.show("nope"), 404, "Device 'nope' was not found.")
d = anon.scheduler.devices.get_dictionary("qemu01")
check("get_dictionary", isinstance(d, xmlrpc.client.Binary) and b"extends 'qemu.jinja2'" in d.data)
r = anon.scheduler.devices.get_dictionary("qemu01", True)
check("get_dictionary render", isinstance(yaml.safe_load(r.data), dict))
fault("set_dictionary anon", lambda: anon.scheduler.devices.set_dictionary("qemu02", "x"), 401)
fault("set_dictionary user", lambda: alice.scheduler.devices.set_dictionary("qemu02", "x"), 403, "missing permission")
check("set_dictionary", admin.scheduler.devices.set_dictionary("qemu02", "{% extends 'qemu.jinja2' %}\n{% set arch = 'arm64' %}\n") is True)
check("set_dictionary stored", b"arm64" in anon.scheduler.devices.get_dictionary("qemu02").data)
check("export_device_dictionary", b"arm64" in anon.scheduler.export_device_dictionary("qemu02").data)
check("import_device_dictionary", admin.scheduler.import_device_dictionary("qemu02", "{% extends 'qemu.jinja2' %}\n") == "Device dictionary updated for qemu02")
check("get_device_config", isinstance(anon.scheduler.get_device_config("qemu02"), xmlrpc.client.Binary))
check("devices.add", admin.scheduler.devices.add("qemu03", "qemu", WORKER, None, None, True, "MAINTENANCE", "third") is None)
fault("devices.add dup", lambda: admin.scheduler.devices.add("qemu03", "qemu", WORKER), 400)
fault("devices.add bad health", lambda: admin.scheduler.devices.add("qemu04", "qemu", WORKER, None, None, True, "Good"), 400)
fault("devices.add unknown type", lambda: admin.scheduler.devices.add("qemu04", "nope", WORKER), 404)
check("devices.update", admin.scheduler.devices.update("qemu03", None, None, None, None, "GOOD", "renamed") is None)
s3 = anon.scheduler.devices.show("qemu03")
check("devices.update applied", s3["health"] == "Good" and s3["description"] == "renamed", repr(s3))
fault("devices.update bad health", lambda: admin.scheduler.devices.update("qemu03", None, None, None, None, "bogus"), 400, "Health 'bogus' is invalid")
check("tags.add", admin.scheduler.devices.tags.add("qemu03", "newtag") is None)
check("tags.list", anon.scheduler.devices.tags.list("qemu03") == ["newtag"])
check("tags.delete", admin.scheduler.devices.tags.delete("qemu03", "newtag") is None and anon.scheduler.devices.tags.list("qemu03") == [])
ad = anon.scheduler.all_devices()
check("all_devices", ["qemu01", "qemu", "idle", None, True] in ad, repr(ad))
adt = anon.scheduler.all_device_types()
check("all_device_types", {"name": "qemu", "idle": 3, "busy": 0, "offline": 0} in adt, repr(adt))
st = anon.scheduler.get_device_status("qemu01")
check("get_device_status", st == {"hostname": "qemu01", "status": "idle", "job": None, "offline_since": None, "offline_by": None, "is_pipeline": True}, repr(st))
check("maintenance", admin.scheduler.put_into_maintenance_mode("qemu03", "test") is None and anon.scheduler.devices.show("qemu03")["health"] == "Maintenance")
check("online", admin.scheduler.put_into_online_mode("qemu03", "test") is None and anon.scheduler.devices.show("qemu03")["health"] == "Unknown")
fault("maintenance no reason", lambda: admin.scheduler.put_into_maintenance_mode("qemu03", ""), 400, "Reason was not specified")

# --- device types ---
dtl = anon.scheduler.device_types.list()
check("device_types.list", {"name": "qemu", "devices": 3, "installed": True, "template": True} in dtl, repr(dtl))
check("device_types.list all", any(t["installed"] is False for t in anon.scheduler.device_types.list(True)))
dts = anon.scheduler.device_types.show("qemu")
check("device_types.show", dts["aliases"] == ["qemu-alias"] and "qemu01" in dts["devices"] and dts["health_denominator"] in ("hours", "jobs")
      and dts["default_template"] is True, repr(dts))
fault("device_types.show unknown", lambda: anon.scheduler.device_types.show("nope"), 404)
t = anon.scheduler.device_types.get_template("qemu")
check("get_template", isinstance(t, xmlrpc.client.Binary) and b"extends" in t.data)
check("get_template suffix", anon.scheduler.device_types.get_template("qemu.jinja2").data == t.data)
fault("get_template path", lambda: anon.scheduler.device_types.get_template("../etc/passwd"), 400, "Invalid device-type")
fault("get_template unknown", lambda: anon.scheduler.device_types.get_template("nope"), 404)
check("set_template", admin.scheduler.device_types.set_template("custom", "{% extends 'base.jinja2' %}\n") is None)
check("set_template read back", b"base.jinja2" in anon.scheduler.device_types.get_template("custom").data)
check("device_types.add", admin.scheduler.device_types.add("newtype", "desc", True, False, 24, "hours") is None)
fault("device_types.add dup", lambda: admin.scheduler.device_types.add("newtype", "d", True, False, 24, "hours"), 400)
fault("device_types.add bad denom", lambda: admin.scheduler.device_types.add("t2", "d", True, False, 24, "weeks"), 400)
check("device_types.update", admin.scheduler.device_types.update("newtype", None, None, None, 12, "jobs", None) is None
      and anon.scheduler.device_types.show("newtype")["health_denominator"] == "jobs")
check("dt aliases.add", admin.scheduler.device_types.aliases.add("newtype", "nt") is None)
check("dt aliases.list", anon.scheduler.device_types.aliases.list("newtype") == ["nt"])
check("dt aliases.delete", admin.scheduler.device_types.aliases.delete("newtype", "nt") is None)
check("get_device_type_by_alias", anon.scheduler.get_device_type_by_alias("alias") == {"qemu-alias": ["qemu"]})

# --- aliases, tags, workers ---
check("aliases.add", admin.scheduler.aliases.add("a2", "qemu") is None)
fault("aliases.add missing dt", lambda: admin.scheduler.aliases.add("a3", "nope"), 400)
check("aliases.list", sorted(anon.scheduler.aliases.list()) == ["a2", "qemu-alias"])
check("aliases.show", anon.scheduler.aliases.show("a2") == {"name": "a2", "device_type": "qemu"})
check("aliases.delete", admin.scheduler.aliases.delete("a2") is None and "a2" not in anon.scheduler.aliases.list())
fault("aliases.add anon", lambda: anon.scheduler.aliases.add("a4", "qemu"), 401)
check("scheduler.tags.add", admin.scheduler.tags.add("t1", "a tag") is None)
fault("scheduler.tags.add dup", lambda: admin.scheduler.tags.add("t1"), 400)
check("scheduler.tags.list", {"name": "t1", "description": "a tag"} in anon.scheduler.tags.list())
check("scheduler.tags.show", anon.scheduler.tags.show("fast") == {"name": "fast", "description": "a fast board", "devices": ["qemu01"]})
check("workers.list", anon.scheduler.workers.list() == [WORKER])
w = anon.scheduler.workers.show(WORKER)
check("workers.show", set(w) == {"hostname", "description", "state", "health", "devices", "last_ping", "job_limit", "version",
                                 "default_config", "default_env", "default_env_dut"}
      and w["state"] in ("Online", "Offline") and w["health"] == "Active" and isinstance(w["last_ping"], xmlrpc.client.DateTime)
      and w["devices"] == ["qemu01", "qemu02", "qemu03"] and isinstance(w["job_limit"], int) and w["default_config"] is True, repr(w))
fault("workers.show unknown", lambda: anon.scheduler.workers.show("nope"), 404, "Worker 'nope' was not found.")
fault("workers.add anon", lambda: anon.scheduler.workers.add("w2"), 401)
fault("workers.add user", lambda: alice.scheduler.workers.add("w2"), 403, "missing permission lava_scheduler_app.add_worker")
check("workers.add", admin.scheduler.workers.add("w2", "second") is None)
check("workers.add disabled", admin.scheduler.workers.add("w3", None, True) is None
      and anon.scheduler.workers.show("w3")["health"] == "Retired")
fault("workers.add dup", lambda: admin.scheduler.workers.add("w2"), 400, "worker already exists?")
fault("workers.add path", lambda: admin.scheduler.workers.add("a/b"), 400, "Invalid worker name")
check("workers.list sorted", anon.scheduler.workers.list() == sorted([WORKER, "w2", "w3"]))
w2 = anon.scheduler.workers.show("w2")
check("workers.show new", w2["state"] == "Offline" and w2["description"] == "second" and w2["devices"] == []
      and w2["job_limit"] == 0 and w2["version"] is None, repr(w2))
check("workers.update", admin.scheduler.workers.update("w2", "renamed", "MAINTENANCE", 2) is None)
w2 = anon.scheduler.workers.show("w2")
check("workers.update applied", (w2["description"], w2["health"], w2["job_limit"]) == ("renamed", "Maintenance", 2), repr(w2))
fault("workers.update bad health", lambda: admin.scheduler.workers.update("w2", None, "Active"), 400, "Invalid health: Active")
fault("workers.update bad limit", lambda: admin.scheduler.workers.update("w2", None, None, -1), -32603, "Invalid job limit")
fault("workers.update unknown", lambda: admin.scheduler.workers.update("nope", "x"), 404)
fault("workers.update user", lambda: alice.scheduler.workers.update("w2", "x"), 403, "change_worker")
for kind, what in (("config", "a dispatcher configuration"), ("env", "an env file"), ("env_dut", "an env-dut file")):
    get = getattr(admin.scheduler.workers, "get_" + kind)
    put = getattr(admin.scheduler.workers, "set_" + kind)
    fault("workers.get_%s unset" % kind, lambda: get("w2"), 404, "Worker 'w2' does not have %s" % what)
    fault("workers.get_%s path" % kind, lambda: get("../x"), 400, "Invalid worker name")
    fault("workers.get_%s unknown" % kind, lambda: get("nope"), 404, "Worker 'nope' was not found.")
    fault("workers.set_%s user" % kind, lambda: getattr(alice.scheduler.workers, "set_" + kind)("w2", "x: 1\n"), 403)
    check("workers.set_%s" % kind, put("w2", "%s: 1\n" % kind) is True)
    got = get("w2")
    check("workers.get_%s" % kind, isinstance(got, xmlrpc.client.Binary) and got.data == ("%s: 1\n" % kind).encode(), repr(got))
    check("workers.set_%s empty resets" % kind, put("w2", "") is True and anon.scheduler.workers.show("w2")["default_" + kind] is True)
check("scheduler.tags.delete", admin.scheduler.tags.delete("t1") is None and all(t["name"] != "t1" for t in anon.scheduler.tags.list()))
fault("scheduler.tags.delete unknown", lambda: admin.scheduler.tags.delete("t1"), 404, "Tag 't1' was not found.")
fault("scheduler.tags.delete anon", lambda: anon.scheduler.tags.delete("fast"), 401)
fault("scheduler.tags.delete user", lambda: alice.scheduler.tags.delete("fast"), 403)
check("publisher socket", anon.scheduler.get_publisher_event_socket().startswith("tcp://*:"))

# --- results ---
fault("results anon", lambda: anon.results.get_testjob_results_yaml(FINISHED), 401)
ry = yaml.safe_load(alice.results.get_testjob_results_yaml(FINISHED))
check("results yaml", len(ry) == FINISHED_CASES and ry[0]["suite"] == "lava" and ry[0]["result"] == "pass" and ry[0]["job"] == str(FINISHED)
      and ry[0]["measurement"] == "None" and isinstance(ry[0]["metadata"], dict), repr(ry))
rc = alice.results.get_testjob_results_csv(FINISHED)
check("results csv", rc.splitlines()[0] == '"job","suite","result","measurement","unit","duration","timeout","logged","level","metadata","url","name","id","log_start_line","log_end_line"', rc)
sl = yaml.safe_load(alice.results.get_testjob_suites_list_yaml(FINISHED))
check("suites list", sorted(s["name"] for s in sl) == ["0_smoke", "lava"])
check("suites csv", alice.results.get_testjob_suites_list_csv(FINISHED).startswith('"name","job","id"'))
check("testsuite yaml", len(yaml.safe_load(alice.results.get_testsuite_results_yaml(FINISHED, "0_smoke"))) == 1)
check("testsuite csv", "ls" in alice.results.get_testsuite_results_csv(FINISHED, "0_smoke"))
check("testsuite count", alice.results.get_testsuite_results_count(FINISHED, "lava") == FINISHED_LAVA_CASES)
check("testcase yaml", yaml.safe_load(alice.results.get_testcase_results_yaml(FINISHED, "0_smoke", "ls"))[0]["result"] == "fail")
check("testcase csv", '"fail"' in alice.results.get_testcase_results_csv(FINISHED, "0_smoke", "ls"))
check("metadata", alice.results.get_testjob_metadata(FINISHED) == [{"build": "42"}])
fault("results unknown suite", lambda: alice.results.get_testsuite_results_yaml(FINISHED, "nope"), 404, "Specified test suite not found.")
fault("results unknown job", lambda: alice.results.get_testjob_results_yaml(999999), 404, "Specified job not found.")
fault("results private", lambda: bob.results.get_testjob_results_yaml(pj), 401, "Permission denied for user to job")

# --- device-type health checks, pipeline validation ---
check("set_health_check", admin.scheduler.device_types.set_health_check("custom", "job_name: hc\n") is None)
hc = anon.scheduler.device_types.get_health_check("custom")
check("get_health_check", isinstance(hc, xmlrpc.client.Binary) and hc.data == b"job_name: hc\n", repr(hc))
fault("set_health_check user", lambda: alice.scheduler.device_types.set_health_check("custom", "x"), 403)
fault("set_health_check path", lambda: admin.scheduler.device_types.set_health_check("../x", "x"), 400, "Invalid device-type")
vp = anon.scheduler.validate_pipeline_devices()
vpy = yaml.safe_load(vp.data)
check("validate_pipeline_devices", isinstance(vp, xmlrpc.client.Binary) and vpy["qemu01"] == {"Valid": None}, repr(vpy))
check("validate_pipeline_devices by type", set(yaml.safe_load(anon.scheduler.validate_pipeline_devices("qemu").data)) >= {"qemu01", "qemu02"})
check("validate_pipeline_devices by host", set(yaml.safe_load(anon.scheduler.validate_pipeline_devices("qemu01").data)) == {"qemu01"})
fault("validate_pipeline_devices unknown", lambda: anon.scheduler.validate_pipeline_devices("nope"), 404, "No devices found")

# --- administrators' system helpers ---
check("user_can_view_bundles", alice.system.user_can_view_bundles(["x"]) is False)
fault("set_user_groups user", lambda: alice.system.set_user_groups(ALICE_EMAIL, []), 403, "forbidden")
fault("set_user_groups anon", lambda: anon.system.set_user_groups(ALICE_EMAIL, []), 401)
fault("set_user_groups unknown", lambda: admin.system.set_user_groups("nobody@example.com", []), 400, "please use an existing user")
fault("set_user_groups not list", lambda: admin.system.set_user_groups(ALICE_EMAIL, "lab"), 400, "groups must be a list")
check("assign_perm_device", admin.system.assign_perm_device("lava_scheduler_app.submit_to_device", "qemu02", "lab") is None)
check("assign_perm_device restricts", [d["hostname"] for d in bob.scheduler.devices.list()] == ["qemu01", "qemu03"]
      and "qemu02" in [d["hostname"] for d in alice.scheduler.devices.list()])
check("set_user_groups", admin.system.set_user_groups(ALICE_EMAIL, ["nosuch"]) is None
      and "qemu02" not in [d["hostname"] for d in alice.scheduler.devices.list()])
check("set_user_groups back", admin.system.set_user_groups(ALICE_EMAIL, ["lab"]) is None
      and "qemu02" in [d["hostname"] for d in alice.scheduler.devices.list()])
check("revoke_perm_device", admin.system.revoke_perm_device("submit_to_device", "qemu02", "lab") is None
      and "qemu02" in [d["hostname"] for d in bob.scheduler.devices.list()])
fault("assign_perm_device user", lambda: alice.system.assign_perm_device("view_device", "qemu02", "lab"), 403)
fault("assign_perm_device bad group", lambda: admin.system.assign_perm_device("view_device", "qemu02", "nogroup"), 400, "please use existing group name")
fault("assign_perm_device bad device", lambda: admin.system.assign_perm_device("view_device", "nope", "lab"), 400, "please use existing device hostname")
fault("assign_perm_device device not str", lambda: admin.system.assign_perm_device("view_device", 3, "lab"), 400, "device argument must be a string")
fault("assign_perm_device bad perm", lambda: admin.system.assign_perm_device("fly", "qemu02", "lab"), 400, "Please use existing permission codename")
fault("assign_perm_device change", lambda: admin.system.assign_perm_device("change_device", "qemu02", "lab"), 400, "per-device")
fault("assign_perm_device_type", lambda: admin.system.assign_perm_device_type("view_devicetype", "qemu", "lab"), 400, "no per-group device-type")
fault("assign_perm_device_type bad type", lambda: admin.system.assign_perm_device_type("view_devicetype", "nope", "lab"), 400, "please use existing device type name")
fault("revoke_perm_device_type", lambda: admin.system.revoke_perm_device_type("view_devicetype", "qemu", "lab"), 400)
fault("revoke_perm_device_type user", lambda: alice.system.revoke_perm_device_type("view_devicetype", "qemu", "lab"), 403)
nm = yaml.safe_load(alice.system.pipeline_network_map())
check("pipeline_network_map", nm == {"switches": {}}, repr(nm))
fault("pipeline_network_map switch", lambda: alice.system.pipeline_network_map("sw1"), 404, "No switch 'sw1'")
fault("pipeline_network_map anon", lambda: anon.system.pipeline_network_map(), 401)

# --- saved queries: run live with the caller's visibility; owner, group or superuser only ---
done = alice.results.run_query("done")
check("run_query", FINISHED in [j["id"] for j in done] and all(j["health"] == 1 for j in done)
      and done == alice.results.make_custom_query("testjob", "testjob__submitter__exact__alice,testjob__health__exact__Complete"),
      repr(done))
check("run_query limit", len(alice.results.run_query("done", 1)) == 1)
check("run_query owner named", alice.results.run_query("done", 200, "alice") == done)
check("run_query superuser", FINISHED in [j["id"] for j in admin.results.run_query("done", 200, "alice")])
check("run_query group", FINISHED in [j["id"] for j in alice.results.run_query("shared", 10, "bob")])
check("run_query live", FINISHED in [j["id"] for j in alice.results.run_query("live")])
fault("run_query missing", lambda: alice.results.run_query("q1"), 404, "Query with name q1 owned by user alice does not exist.")
fault("run_query other owner", lambda: alice.results.run_query("q1", 10, "bob"), 404, "owned by user bob")
fault("run_query denied", lambda: bob.results.run_query("done", 200, "alice"), 403, "Permission denied for user to query done")
fault("run_query not in group", lambda: alice.results.run_query("private", 200, "bob"), 403, "Permission denied for user to query private")
fault("run_query anon", lambda: anon.results.run_query("q1"), 401)
check("refresh_query", alice.results.refresh_query("done") is None)
check("refresh_query group", alice.results.refresh_query("shared", "bob") is None)
fault("refresh_query missing", lambda: alice.results.refresh_query("q1"), 400, "Query with name q1 owned by user alice does not exist.")
fault("refresh_query denied", lambda: bob.results.refresh_query("done", "alice"), 401, "Permission denied for user to query done")
fault("refresh_query live", lambda: alice.results.refresh_query("live"), 400,
      "Query with name live owned by user alice cannot be refreshed since it's a live query.")
fault("refresh_all_queries user", lambda: alice.results.refresh_all_queries(), 401,
      "Permission denied for user alice. Must be a superuser to refresh all queries.")
check("refresh_all_queries", admin.results.refresh_all_queries() is None)

# --- custom queries: LAVA's condition strings, the caller's visibility, model dicts ---
DT = xmlrpc.client.DateTime
jobs_q = alice.results.make_custom_query("testjob", "testjob__submitter__exact__alice,testjob__health__exact__Complete")
fj = [j for j in jobs_q if j["id"] == FINISHED]
check("make_custom_query testjob", len(fj) == 1 and all(j["health"] == 1 for j in jobs_q), repr(jobs_q))
if fj:
    j = fj[0]
    check("make_custom_query testjob shape",
          isinstance(j["submit_time"], DT) and isinstance(j["end_time"], DT) and isinstance(j["start_time"], DT)
          and j["state"] == 5 and j["testjob_ptr_id"] == FINISHED and j["actual_device_id"] == "qemu01"
          and j["requested_device_type_id"] == "qemu" and j["is_public"] is True and isinstance(j["submitter_id"], int)
          and j["_state"] == {"db": "default", "adding": False, "fields_cache": {}} and j["priority"] == 100 and "visibility" not in j,
          repr(j))
mine = [j["id"] for j in alice.results.make_custom_query("testjob", "submitter__alice")]
theirs = [j["id"] for j in bob.results.make_custom_query("testjob", "submitter__alice", 200)]
check("make_custom_query visibility", pj in mine and pj not in theirs and FINISHED in theirs, "%r %r" % (mine, theirs))
check("make_custom_query newest first", mine == sorted(mine, reverse=True), repr(mine))
cases = alice.results.make_custom_query(
    "testcase", "testsuite__name__exact__0_smoke,testcase__result__exact__Test failed,"
    "testjob__end_time__gt__2000-01-01 00:00:00")
check("make_custom_query testcase",
      [c["name"] for c in cases] == ["ls"] and cases[0]["result"] == 1 and cases[0]["measurement"] is None
      and isinstance(cases[0]["logged"], DT) and isinstance(cases[0]["suite_id"], int)
      and cases[0]["testcase_ptr_id"] == cases[0]["id"], repr(cases))
check("make_custom_query no match",
      alice.results.make_custom_query("testcase", "testjob__end_time__lt__2000-01-01 00:00:00") == [])
suites = alice.results.make_custom_query("testsuite", "namedtestattribute__build__exact__42")
check("make_custom_query attribute",
      {s["job_id"] for s in suites} == {FINISHED} and sorted(s["name"] for s in suites) == ["0_smoke", "lava"], repr(suites))
check("make_custom_query limit", len(alice.results.make_custom_query("testsuite", "", 1)) == 1)
fault("make_custom_query entity", lambda: alice.results.make_custom_query("device", ""), 400, "Wrong table name in entity parameter")
fault("make_custom_query field", lambda: alice.results.make_custom_query("testjob", "testjob__bogus__exact__1"), 400,
      "Conditions URL incorrect: Field does not exist.")
fault("make_custom_query malformed", lambda: alice.results.make_custom_query("testjob", "a__b__c__d__e"), -32603,
      "Conditions URL incorrect. Please refer to query docs.")
fault("make_custom_query anon", lambda: anon.results.make_custom_query("testjob", ""), 401)

# --- a notify block is checked against the database at submission, as LAVA does ---
def with_notify(block):
    return QEMU_JOB.rstrip("\n") + "\nnotify:\n  criteria: {status: finished}\n" + block


fault("notify unknown user", lambda: alice.scheduler.jobs.submit(with_notify(
    "  recipients:\n  - to: {method: email, user: nobody}\n")), 400,
    "Problem with submitted job data: 'nobody' is not an existing user in LAVA.")
fault("notify compare query missing", lambda: alice.scheduler.jobs.submit(with_notify(
    "  compare:\n    query: {username: alice, name: nope}\n")), 400,
    "Problem with submitted job data: Query ~alice/nope does not exist")
fault("notify compare query entity", lambda: alice.scheduler.jobs.submit(with_notify(
    "  compare:\n    query: {entity: testcase, conditions: {result: fail}}\n")), 400,
    "Problem with submitted job data: Only TestJob queries allowed.")
check("notify with a user and a saved compare query", isinstance(alice.scheduler.jobs.submit(with_notify(
    "  recipients:\n  - to: {method: email, user: bob}\n  compare:\n    query: {username: alice, name: done}\n")), int))

# --- wrong argument types never give HTTP errors ---
for name, args in [("scheduler.jobs.show", ([],)), ("scheduler.jobs.list", ({},)), ("scheduler.devices.show", (1.5,)),
                   ("scheduler.jobs.logs", (FINISHED, "x")), ("system.methodHelp", ([],)), ("scheduler.jobs.submit", (None,))]:
    try:
        getattr(alice, name)(*args)
        check("bad args " + name, False, "no fault")
    except xmlrpc.client.Fault as f:
        check("bad args " + name, f.faultCode in (400, 401, 404, -32603), repr(f))

# Every method the server lists was called at least once above.
check("every listed method exercised", set(methods) <= called, "not called: %s" % sorted(set(methods) - called))

if failures:
    print("FAILED %d of %d checks:" % (len(failures), len(checked)))
    for f in failures:
        print("  " + f)
    sys.exit(1)
print("%d checks passed" % len(checked))
print("ALL OK")
