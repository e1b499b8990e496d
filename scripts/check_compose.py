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
            "consignment-cli", "user-cli", "api-gateway"]
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
        if name.endswith("-service") or name == "api-gateway":
            depends = service.get("depends_on") or {}
            check(bool(depends), f"{name} waits for what it needs (depends_on)")
            probe = (service.get("healthcheck") or {}).get("test")
            check(probe == ["CMD", name, "healthcheck"],
                  f"{name}'s healthcheck asks the binary itself (test: {probe})")
            unhealthy = sorted(dep for dep, how in depends.items()
                               if dep.endswith("-service") and (how or {}).get("condition") != "service_healthy")
            check(not unhealthy, f"{name} waits for the services it calls to be healthy"
                  + (f" (not: {unhealthy})" if unhealthy else ""))
            otlp = environment.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
            check(otlp.startswith("http://jaeger:"), f"{name} sends its spans to jaeger (OTEL_EXPORTER_OTLP_ENDPOINT={otlp!r})")

    # user-service's signing key outlives restarts: its file is on a named volume.
    user = services.get("user-service") or {}
    key_file = (user.get("environment") or {}).get("JWT_SIGNING_KEY_FILE", "")
    named = set(compose.get("volumes") or {})
    on_volume = [v for v in user.get("volumes") or []
                 if isinstance(v, str) and v.split(":")[0] in named and key_file.startswith(v.split(":")[1].rstrip("/") + "/")]
    check(bool(key_file) and bool(on_volume),
          f"user-service's JWT_SIGNING_KEY_FILE ({key_file!r}) is on a named volume")
    # A healthcheck tool must exist in the image: nats' plain tag is FROM scratch (no wget).
    nats = services.get("nats") or {}
    uses_wget = "wget" in ((nats.get("healthcheck") or {}).get("test") or [])
    check(not uses_wget or str(nats.get("image", "")).endswith("-alpine"),
          f"nats' image has the wget its healthcheck runs ({nats.get('image')})")

    # The Dockerfile's dependency stage needs every workspace member's manifest.
    members = re.findall(r'^\s*"([a-z-]+)",\s*$', open("Cargo.toml").read(), re.MULTILINE)
    dockerfile = open("Dockerfile").read()
    missing = [m for m in members if f"COPY {m}/Cargo.toml" not in dockerfile]
    check(bool(members) and not missing,
          "the Dockerfile copies every workspace member's manifest" + (f" (missing: {missing})" if missing else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
