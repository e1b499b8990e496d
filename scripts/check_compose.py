#!/usr/bin/env python3
"""Checks docker-compose.yml against the binaries, since no Docker engine runs
here to try it: it parses, names every service, and each service sets only
environment variables its binary reads (as its `--help` lists them); Consul
runs with ACLs on (default deny) and each service registers with a token of
its own, which the consul-acl one-shot makes before the service starts.

    check_compose.py BIN_DIR      prints one "ok - ..." / "not ok - ..." line per check
"""
import re
import subprocess
import sys

import yaml

BINARIES = ["consignment-service", "vessel-service", "user-service", "email-service",
            "consignment-cli", "user-cli", "api-gateway"]
INFRASTRUCTURE = ["mongodb", "postgres", "nats", "consul", "consul-acl", "jaeger", "mail"]


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

    check_consul_acls(services, check)

    # The Dockerfile's dependency layer is derived from the workspace
    # (cargo-chef), so no member can be forgotten in it: no manifest by hand.
    dockerfile = open("Dockerfile").read()
    by_hand = re.findall(r"^COPY \S+/Cargo\.toml", dockerfile, re.MULTILINE)
    check("cargo chef prepare" in dockerfile and "cargo chef cook" in dockerfile and not by_hand,
          "the Dockerfile derives its dependency layer from the workspace (cargo-chef), no manifest listed by hand"
          + (f" (by hand: {by_hand})" if by_hand else ""))
    return 1 if failed else 0


def check_consul_acls(services, check):
    """Consul with ACLs on, default deny; a token per registering service,
    made by consul-acl (scripts/consul-acl.sh) before the service starts."""
    consul = services.get("consul") or {}
    hcl = " ".join(str(part) for part in consul.get("command") or [])
    check("enabled = true" in hcl and 'default_policy = "deny"' in hcl,
          "consul runs with ACLs on, default deny")
    management = (consul.get("environment") or {}).get("CONSUL_HTTP_TOKEN", "")
    check(bool(management) and f'master = "{management}"' in hcl and f'agent = "{management}"' in hcl,
          "consul's management token (acl.tokens.master) is the one its healthcheck and consul-acl use")
    acl = services.get("consul-acl") or {}
    acl_env = acl.get("environment") or {}
    check(acl.get("entrypoint") == ["/bin/sh", "/consul-acl.sh"]
          and "./scripts/consul-acl.sh:/consul-acl.sh:ro" in (acl.get("volumes") or [])
          and acl_env.get("CONSUL_HTTP_TOKEN") == management
          and ((acl.get("depends_on") or {}).get("consul") or {}).get("condition") == "service_healthy",
          "consul-acl runs scripts/consul-acl.sh with the management token once consul is healthy")
    registering = [name for name in BINARIES
                   if "CONSUL_HTTP_ADDR" in ((services.get(name) or {}).get("environment") or {})]
    tokens = {}
    for name in registering:
        service = services.get(name) or {}
        token = (service.get("environment") or {}).get("CONSUL_HTTP_TOKEN", "")
        tokens[name] = token
        made = acl_env.get(name.upper().replace("-", "_") + "_CONSUL_TOKEN")
        check(bool(token) and token != management and made == token and name in (acl.get("command") or []),
              f"{name} registers with its own Consul token, which consul-acl makes")
        waits = ((service.get("depends_on") or {}).get("consul-acl") or {}).get("condition")
        check(waits == "service_completed_successfully", f"{name} starts once consul-acl has made the tokens")
    check(len(set(tokens.values())) == len(tokens), "no two services share a Consul token")


if __name__ == "__main__":
    sys.exit(main())
