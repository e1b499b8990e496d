#!/usr/bin/env python3
"""Checks docker-compose.yml against the binaries, since no Docker engine runs
here to try it: it parses, names every service, and each service sets only
environment variables its binary reads (as its `--help` lists them).

    check_compose.py BIN_DIR      prints one "ok - ..." / "not ok - ..." line per check
"""
import re
import subprocess
import sys

import yaml

BINARIES = ["consignment-service", "vessel-service", "user-service", "email-service",
            "consignment-cli", "user-cli"]
INFRASTRUCTURE = ["mongodb", "postgres", "nats", "consul", "jaeger", "mail"]


def env_names(binary_path):
    """The environment variables a binary reads, from its --help."""
    help_text = subprocess.run([binary_path, "--help"], capture_output=True, text=True, check=True).stdout
    names = set(re.findall(r"\[env: ([A-Z0-9_]+)", help_text))
    # Read by the CLIs' token store, not through clap.
    if binary_path.endswith("-cli"):
        names.add("SHIPPY_CONFIG_DIR")
    return names


def main():
    bin_dir = sys.argv[1]
    failed = False

    def check(ok, what):
        nonlocal failed
        print(("ok - " if ok else "not ok - ") + what)
        failed |= not ok

    try:
        compose = yaml.safe_load(open("docker-compose.yml"))
    except Exception as error:  # noqa: BLE001 - any parse failure is the finding
        check(False, f"docker-compose.yml parses: {error}")
        return 1
    check(isinstance(compose, dict) and "services" in compose, "docker-compose.yml parses")
    services = compose.get("services", {})
    for name in BINARIES + INFRASTRUCTURE:
        check(name in services, f"compose names {name}")

    for name in BINARIES:
        service = services.get(name) or {}
        known = env_names(f"{bin_dir}/{name}")
        environment = service.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(item.split("=", 1) for item in environment)
        unknown = sorted(set(environment) - known)
        check(not unknown, f"{name} sets only variables it reads" + (f" (unknown: {unknown})" if unknown else ""))
        runs = (service.get("entrypoint") or service.get("command") or [None])[0]
        check(runs == name, f"{name} runs its own binary (runs {runs})")
        if name.endswith("-service"):
            depends = service.get("depends_on") or {}
            check(bool(depends), f"{name} waits for what it needs (depends_on)")

    # The Dockerfile's dependency stage needs every workspace member's manifest.
    members = re.findall(r'^\s*"([a-z-]+)",\s*$', open("Cargo.toml").read(), re.MULTILINE)
    dockerfile = open("Dockerfile").read()
    missing = [m for m in members if f"COPY {m}/Cargo.toml" not in dockerfile]
    check(bool(members) and not missing,
          "the Dockerfile copies every workspace member's manifest" + (f" (missing: {missing})" if missing else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
