#!/usr/bin/python3
"""Differential check: LAVA 2023.01's own Python validation against our fixture placement.

LAVA validates a job with its job schema (lava_common.schemas.validate) in one of two modes,
strict or not (unknown keys tolerated), and always with the server's submission schema
(lava_scheduler_app/schema.py validate_submission). This script runs both modes on every
fixture and checks the verdicts against the fixture's directory:

    valid/           accepted in both modes
    invalid/         refused in both modes
    strict-invalid/  accepted when not strict (as at submission), refused when strict

A file under invalid/ or strict-invalid/ that LAVA's schemas accept may carry a line

    # lava-rejects-in: <where>

naming the later LAVA check that refuses it (a server check that needs the database-free part
of submit, the MultiNode split, or the dispatcher's validate). Those are listed, not asserted.

Needs /usr/bin/python3 with python3-yaml and python3-voluptuous, and the Debian lava-common
and lava-server packages extracted (see tests/install-lava-reference.sh). Run:

    /usr/bin/python3 tests/lava_schema_check.py [--lava-root DIR] tests/fixtures/jobs
"""

import argparse
import importlib.util
import os
import sys
import types

DEFAULT_ROOT = "/opt/lava-reference/usr/lib/python3/dist-packages"
MAX_SIZE = 2621440


def setup(root):
    if root not in sys.path:
        sys.path.insert(0, root)
    # schema.py only needs django.conf.settings.EXTRA_CONTEXT_VARIABLES.
    django = types.ModuleType("django")
    conf = types.ModuleType("django.conf")
    conf.settings = types.SimpleNamespace(EXTRA_CONTEXT_VARIABLES=[])
    django.conf = conf
    sys.modules.setdefault("django", django)
    sys.modules.setdefault("django.conf", conf)
    from lava_common.schemas import validate  # noqa: E402

    path = os.path.join(root, "lava_scheduler_app", "schema.py")
    spec = importlib.util.spec_from_file_location("lava_submission_schema", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return validate, module.validate_submission


def load(path):
    """The job as LAVA loads it, or a reason it cannot."""
    import yaml

    try:
        loader = yaml.CSafeLoader
    except AttributeError:
        loader = yaml.SafeLoader
    with open(path, "rb") as handle:
        data = handle.read()
    if len(data) > MAX_SIZE:
        return None, "too large"
    try:
        return yaml.load(data.decode("utf-8"), Loader=loader), None
    except Exception as exc:  # noqa: BLE001 - any load failure is a rejection
        return None, "load: %s" % type(exc).__name__


def verdict(job, strict, validate, validate_submission):
    """Returns None if LAVA accepts the loaded job in this mode, else a short reason."""
    mode = "strict" if strict else "lenient"
    try:
        validate(job, strict=strict)
    except Exception as exc:  # noqa: BLE001 - voluptuous.Invalid or a crash
        return "%s: %s %s" % (mode, getattr(exc, "path", ""), getattr(exc, "msg", exc))
    try:
        validate_submission(job)
    except Exception as exc:  # noqa: BLE001
        return "submission: %s" % exc
    return None


# Directory → whether LAVA should accept it (lenient, strict).
EXPECTED = {
    "valid": (True, True),
    "invalid": (False, False),
    "strict-invalid": (True, False),
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lava-root", default=os.environ.get("LAVA_REFERENCE_ROOT", DEFAULT_ROOT))
    parser.add_argument("fixtures")
    args = parser.parse_args()
    validate, validate_submission = setup(args.lava_root)

    passed = failed = 0
    for kind, (lenient_ok, strict_ok) in EXPECTED.items():
        directory = os.path.join(args.fixtures, kind)
        for name in sorted(os.listdir(directory)):
            path = os.path.join(directory, name)
            if not name.endswith(".yaml"):
                continue
            job, reason = load(path)
            if reason is None:
                lenient = verdict(job, False, validate, validate_submission)
                strict = verdict(job, True, validate, validate_submission)
            else:
                lenient = strict = reason
            with open(path, "rb") as handle:
                marked = b"# lava-rejects-in:" in handle.read(4096)
            problems = []
            for mode, expect_ok, got in (
                ("lenient", lenient_ok, lenient),
                ("strict", strict_ok, strict),
            ):
                if expect_ok and got is not None:
                    problems.append("LAVA %s rejects: %s" % (mode, got))
                elif not expect_ok and got is None and not marked:
                    problems.append("LAVA %s accepts" % mode)
            if problems:
                print("DISAGREE %s: %s" % (path, "; ".join(problems)))
                failed += 1
            else:
                if marked and (lenient is None or strict is None):
                    print("note %s: schemas accept, rejected by a later LAVA check" % path)
                passed += 1
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
