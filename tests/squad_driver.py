#!/usr/bin/env python3
"""Drives SQUAD's LAVA backend (squad.ci.backend.lava, SQUAD 1.98) against a lavabox server,
the way a SQUAD instance does: a Django project with a sqlite database, a `lava` CI backend
whose URL selects XML-RPC (`.../RPC2`) or REST (`.../api/v0.2/`), a test job submitted with
`Backend.submit`, SQUAD's own listener (`listen()`: the WebSocket, else ZMQ) receiving the
job's events, and `receive_event` fetching the job (`Backend.fetch`, Celery eager) into a
test run.

Prints one JSON object: the LAVA job id, SQUAD's job status, failure, whether the test run
was received and its tests with results, metrics and log size.

usage: squad_driver.py MODE URL USER TOKEN DEFINITION_FILE STATE_DIR TIMEOUT
"""

import json
import os
import sys
import threading


def main():
    mode, url, user, token, definition_file, state_dir, timeout = sys.argv[1:8]
    os.makedirs(state_dir, exist_ok=True)
    # SQUAD keeps test-run files under `storage/` in its working directory.
    definition_file = os.path.abspath(definition_file)
    os.chdir(state_dir)
    os.environ["XDG_DATA_HOME"] = state_dir
    os.environ["SECRET_KEY"] = "lavabox-squad-test"
    os.environ["DATABASE"] = "ENGINE=django.db.backends.sqlite3:NAME=" + os.path.join(
        state_dir, "squad.sqlite3"
    )
    os.environ.pop("SQUAD_CELERY_BROKER_URL", None)  # Celery runs tasks eagerly
    os.environ["DJANGO_SETTINGS_MODULE"] = "squad.settings"
    # Importing SQUAD's web frontend downloads AngularJS and friends from their CDNs (no
    # network here besides package registries); the LAVA backend does not use them, so
    # that one step is skipped and the rest of SQUAD loads as it ships.
    import types

    sys.modules["squad.frontend.setup"] = types.SimpleNamespace(setup_staticfiles=lambda: None)

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)

    from squad.ci.models import Backend, TestJob
    from squad.core.models import Group, Project

    with open(definition_file) as f:
        definition = f.read()

    group = Group.objects.create(slug="lab")
    project = Project.objects.create(group=group, slug="lavabox")
    build = project.builds.create(version="1")
    backend = Backend.objects.create(
        name="lavabox-" + mode,
        url=url,
        username=user,
        token=token,
        implementation_type="lava",
    )
    test_job = TestJob.objects.create(
        backend=backend,
        target=project,
        target_build=build,
        environment="qemu",
        definition=definition,
    )

    impl = backend.get_implementation()
    finished = threading.Event()
    received = []
    original = impl.receive_event

    def receive_event(topic, data):
        # SQUAD's handler (fetches the job once it is finished), then note what came.
        original(topic, data)
        received.append(topic)
        test_job.refresh_from_db()
        if test_job.fetched or test_job.failure:
            finished.set()

    impl.receive_event = receive_event
    # SQUAD's listener, as `manage.py listen` runs it for a backend.
    threading.Thread(target=impl.listen, daemon=True).start()

    backend.submit(test_job)
    test_job.refresh_from_db()
    if not finished.wait(float(timeout)):
        print(json.dumps({"error": "no finished event fetched", "events": received}))
        return 1

    test_job.refresh_from_db()
    run = test_job.testrun
    tests = {}
    metrics = {}
    log_size = 0
    completed = None
    if run is not None:
        for t in run.tests.all():
            tests[t.full_name] = t.status
        for m in run.metrics.all():
            metrics[m.full_name] = m.result
        completed = run.completed
        log_size = len(run.log_file)
    print(
        json.dumps(
            {
                "job_id": test_job.job_id,
                "job_status": test_job.job_status,
                "fetched": test_job.fetched,
                "failure": test_job.failure,
                "testrun": run is not None,
                "completed": completed,
                "tests": tests,
                "metrics": metrics,
                "log_size": log_size,
                "events": len(received),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
