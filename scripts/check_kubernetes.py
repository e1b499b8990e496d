#!/usr/bin/env python3
"""Checks deploy/kubernetes without a cluster (nothing runs a kubelet here).

    check_kubernetes.py --kubectl KUBECTL BIN_DIR

Renders both overlays with `kubectl kustomize` and checks what is rendered:
every object against the Kubernetes OpenAPI schemas (kubernetes-validate, the
schema version of the kubectl used), and against the project: each service
runs its own binary from the project's image and sets only environment
variables that binary reads (its `--help`, as check_compose.py does); probes,
Service targets and scrape annotations name ports the containers have; the
configured listen and metrics ports are the containers' ports; credentials
come from Secrets, never a ConfigMap or a literal; dns:/// peers name a
headless Service of the right service; the pods are locked down; each pod's
grace period outlasts its preStop pause and drain; the Secrets the
production overlay expects are the ones docs/kubernetes.md tells to create;
and each binary starts with the dev overlay's rendered values (hosts moved
to loopback), so the values too are ones it accepts.

Then it checks itself: each kind of check runs again on a copy of a rendered
overlay broken on purpose, and must fail there.

Prints one "ok - ..." / "not ok - ..." line per check; exits 1 if any failed.
"""
import argparse
import base64
import copy
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "deploy", "kubernetes")
OVERLAYS = ["dev", "production"]
SERVICES = ["consignment-service", "vessel-service", "user-service", "email-service"]
# The HTTP edge, probed over HTTP (/healthz, /readyz) rather than gRPC health.
GATEWAY = "api-gateway"
BINARIES = SERVICES + [GATEWAY]
# What each service may still be doing after SIGTERM (and the preStop pause).
# The server sets no drain deadline of its own: it waits for every request in
# flight. Those are short (consignment-service's call to vessel-service is
# bounded at 2 s, retries included; a bcrypt hash, a store write), taken as
# 10 s, then traces flush (3 s export timeout). email-service finishes the
# mail in flight, whose SMTP commands may each take lettre's 60 s timeout.
# api-gateway: a request waits at most its upstream's 5 s timeout after its
# body (10 s), then traces flush.
DRAIN_SECONDS = {"consignment-service": 13, "vessel-service": 13, "user-service": 13, "email-service": 63,
                 GATEWAY: 18}
# Which peer each discovery variable must point at.
PEER_VARIABLES = {"VESSEL_SERVICE_URL": "vessel-service", "USER_SERVICE_URL": "user-service"}
SECRET_NAME = re.compile(r"(^|_)(DATABASE_URL|NATS_URL|SMTP_URL|PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIALS?|PRIVATE_KEY|API_KEY)($|_)|_KEY$")
SECRET_VALUE = re.compile(r"[a-z][a-z0-9+.-]*://[^/@\s:]+:[^/@\s]+@|PRIVATE KEY")


def env_names(binary_path):
    """The environment variables a binary reads, from its --help."""
    out = subprocess.run([binary_path, "--help"], capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"\[env: ([A-Z0-9_]+)", out))


def workspace_version():
    text = open(os.path.join(ROOT, "Cargo.toml")).read()
    match = re.search(r'^\[workspace\.package\][^\[]*?^version\s*=\s*"([^"]+)"', text, re.MULTILINE | re.DOTALL)
    return match.group(1) if match else None


def compose_images():
    """The repositories of docker-compose.yml's infrastructure images (nats,
    postgres, ...): the dev overlay uses the same ones, tags free (the
    compose file may take a variant such as -alpine for its healthchecks)."""
    compose = yaml.safe_load(open(os.path.join(ROOT, "docker-compose.yml")))
    return {image_parts(s["image"])[0] for s in compose.get("services", {}).values()
            if s.get("image") and "build" not in s}


def throwaway_ed25519_pem():
    """A fresh Ed25519 private key as PKCS#8 PEM (what `openssl genpkey
    -algorithm ed25519` writes): the fixed DER prefix, then 32 random bytes."""
    der = bytes.fromhex("302e020100300506032b657004220420") + os.urandom(32)
    return "-----BEGIN PRIVATE KEY-----\n" + base64.b64encode(der).decode() + "\n-----END PRIVATE KEY-----\n"


def render(kubectl, directory):
    done = subprocess.run([kubectl, "kustomize", directory], capture_output=True, text=True)
    if done.returncode != 0:
        return None, done.stderr.strip().splitlines()[-1:] or ["kubectl kustomize failed"]
    return [d for d in yaml.safe_load_all(done.stdout) if d], None


def index(objects):
    return {(o.get("kind"), (o.get("metadata") or {}).get("name")): o for o in objects}


def pod_spec(deployment):
    return ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}


def first_container(deployment):
    """The Deployment's first container ({} without one)."""
    return (pod_spec(deployment).get("containers") or [{}])[0]


def image_parts(image):
    name, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "")
    return name, tag


class Checks:
    """The checks over one rendered overlay; each returns (ok, message) pairs."""

    def __init__(self, overlay, objects, ctx):
        self.overlay = overlay
        self.objects = objects
        self.by = index(objects)
        self.ctx = ctx

    def of_kind(self, kind):
        return [o for o in self.objects if o.get("kind") == kind]

    def deployments(self):
        return self.of_kind("Deployment")

    def deployment(self, name):
        return self.by.get(("Deployment", name))

    def deployed(self, names):
        """(name, Deployment) of each of `names` that has one."""
        for name in names:
            d = self.deployment(name)
            if d is not None:
                yield name, d

    def containers(self):
        for d in self.deployments():
            for c in pod_spec(d).get("containers") or []:
                yield d, c

    def secret(self, name):
        return self.by.get(("Secret", name))

    def effective_env(self, container):
        """Variable name -> (source, origin, value): source is 'value',
        'configmap', 'secret' or 'field'; origin the ConfigMap or Secret's
        name; value the text where the render shows it (not for Secrets)."""
        env = {}
        for source in container.get("envFrom") or []:
            if "configMapRef" in source:
                name = source["configMapRef"]["name"]
                data = (self.by.get(("ConfigMap", name)) or {}).get("data") or {}
                for key, value in data.items():
                    env[(source.get("prefix") or "") + key] = ("configmap", name, value)
            if "secretRef" in source:
                name = source["secretRef"]["name"]
                secret = self.secret(name) or {}
                for key in list((secret.get("data") or {})) + list((secret.get("stringData") or {})):
                    env[(source.get("prefix") or "") + key] = ("secret", name, None)
        for item in container.get("env") or []:
            value_from = item.get("valueFrom") or {}
            if "secretKeyRef" in value_from:
                env[item["name"]] = ("secret", value_from["secretKeyRef"]["name"], None)
            elif "configMapKeyRef" in value_from:
                ref = value_from["configMapKeyRef"]
                data = (self.by.get(("ConfigMap", ref["name"])) or {}).get("data") or {}
                env[item["name"]] = ("configmap", ref["name"], data.get(ref.get("key")))
            elif value_from:
                env[item["name"]] = ("field", None, None)
            else:
                env[item["name"]] = ("value", None, item.get("value"))
        return env

    # -- the checks --------------------------------------------------------

    def schemas(self):
        import kubernetes_validate
        version = self.ctx["schema_version"]
        bad = []
        for o in self.objects:
            what = f"{o.get('kind')}/{(o.get('metadata') or {}).get('name')}"
            try:
                kubernetes_validate.validate(o, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                path = ".".join(str(p) for p in error.path)
                bad.append(f"{what}: {path}: {error.message}")
            except Exception as error:  # noqa: BLE001 - no schema for a kind is a finding too
                bad.append(f"{what}: {getattr(error, 'message', error)}")
        yield not bad, (f"every object ({len(self.objects)}) validates against the Kubernetes {version} schemas (strict)"
                        + (f": {bad[:3]}" if bad else ""))

    def binaries_and_images(self):
        version = self.ctx["version"]
        for name in BINARIES:
            d = self.deployment(name)
            if d is None:
                yield False, f"{name} has a Deployment"
                continue
            containers = pod_spec(d).get("containers") or []
            c = containers[0] if containers else {}
            command = (c.get("command") or c.get("args") or [None])[0]
            yield len(containers) == 1 and command == name, f"{name} runs its own binary (runs {command})"
        wrong = []
        for d, c in self.containers():
            repo, tag = image_parts(c.get("image", ""))
            name = d["metadata"]["name"]
            if name in BINARIES:
                if repo.rsplit("/", 1)[-1] != "shippy-rs" or tag != version:
                    wrong.append(f"{name}: {c.get('image')} (want shippy-rs:{version})")
            elif self.overlay == "production":
                wrong.append(f"{name}: {c.get('image')} (production runs the services only)")
            elif repo not in self.ctx["infra_images"]:
                wrong.append(f"{name}: {c.get('image')} (not one of docker-compose.yml's infrastructure images)")
        yield not wrong, (f"every image is the project's (shippy-rs:{version})"
                          + (" or docker-compose.yml's infrastructure" if self.overlay == "dev" else "")
                          + (f": {wrong}" if wrong else ""))

    def environment(self):
        for name, d in self.deployed(BINARIES):
            env = self.effective_env(first_container(d))
            unknown = sorted(set(env) - self.ctx["env"][name])
            yield not unknown, f"{name} sets only variables it reads" + (f" (unknown: {unknown})" if unknown else "")

    def references(self):
        missing, external = [], set()
        for d in self.deployments():
            spec = pod_spec(d)
            refs = []
            for c in spec.get("containers") or []:
                for source in c.get("envFrom") or []:
                    if "configMapRef" in source:
                        refs.append(("ConfigMap", source["configMapRef"]["name"], None))
                    if "secretRef" in source:
                        refs.append(("Secret", source["secretRef"]["name"], None))
                for item in c.get("env") or []:
                    vf = item.get("valueFrom") or {}
                    if "secretKeyRef" in vf:
                        refs.append(("Secret", vf["secretKeyRef"]["name"], vf["secretKeyRef"]["key"]))
                    if "configMapKeyRef" in vf:
                        refs.append(("ConfigMap", vf["configMapKeyRef"]["name"], vf["configMapKeyRef"]["key"]))
            volumes = {v.get("name"): v for v in spec.get("volumes") or []}
            for v in volumes.values():
                if "secret" in v:
                    keys = [i["key"] for i in v["secret"].get("items") or []] or [None]
                    refs += [("Secret", v["secret"]["secretName"], k) for k in keys]
                if "configMap" in v:
                    refs.append(("ConfigMap", v["configMap"]["name"], None))
            # A *_FILE variable names a file some Secret key is mounted as.
            for c in spec.get("containers") or []:
                for var, (_, _, value) in self.effective_env(c).items():
                    if not var.endswith("_FILE"):
                        continue
                    directory, _, key = str(value or "").rpartition("/")
                    mounts = [m for m in c.get("volumeMounts") or [] if m.get("mountPath", "").rstrip("/") == directory]
                    secrets = [volumes.get(m.get("name"), {}).get("secret") for m in mounts]
                    secrets = [x for x in secrets if x]
                    if not secrets:
                        missing.append(f"{d['metadata']['name']} {var}={value}: no Secret mounted at {directory or '(none)'}")
                    else:
                        refs.append(("Secret", secrets[0]["secretName"], key))
            for kind, name, key in refs:
                obj = self.by.get((kind, name))
                if obj is None:
                    if kind == "Secret" and self.overlay == "production":
                        external.add((name, key))
                    else:
                        missing.append(f"{kind}/{name}")
                elif key is not None and key not in (obj.get("data") or {}) and key not in (obj.get("stringData") or {}):
                    missing.append(f"{kind}/{name} key {key}")
        yield not missing, "every ConfigMap and Secret referenced is rendered, with the keys used" + (
            f" (missing: {sorted(set(missing))})" if missing else "")
        if self.overlay == "production":
            yield from self.documented_secrets(external)

    def documented_secrets(self, expected):
        """Production Secrets are created beforehand: the docs must say how, key by key."""
        docs = self.ctx["docs"]
        undocumented = []
        for name, key in sorted(expected, key=str):
            match = re.search(r"kubectl[^\n]*create secret generic " + re.escape(name) + r"\b(.*?)(?:\n\n|```)", docs, re.DOTALL)
            if not match or (key and not re.search(r"--from-(literal|file)=" + re.escape(key) + r"\b", match.group(1))):
                undocumented.append(f"{name}" + (f" {key}" if key else ""))
        names = sorted({n for n, _ in expected})
        yield bool(expected) and not undocumented, (
            f"docs/kubernetes.md creates every Secret production expects ({', '.join(names)})"
            + (f" (not documented: {undocumented})" if undocumented else ""))

    def secrets_stay_secret(self):
        leaks = []
        for d, c in self.containers():
            for var, (source, origin, value) in self.effective_env(c).items():
                if SECRET_NAME.search(var) and source != "secret":
                    leaks.append(f"{d['metadata']['name']} {var} from {source} {origin or ''}".strip())
                elif source in ("value", "configmap") and value and SECRET_VALUE.search(str(value)):
                    leaks.append(f"{d['metadata']['name']} {var}: a credential in a {source}")
        for cm in self.of_kind("ConfigMap"):
            for key, value in (cm.get("data") or {}).items():
                if SECRET_NAME.search(key) or SECRET_VALUE.search(str(value)):
                    leaks.append(f"ConfigMap/{cm['metadata']['name']} {key}")
        yield not leaks, "credentials come from Secrets, never a ConfigMap or a literal" + (f" ({sorted(set(leaks))})" if leaks else "")

    def ports(self):
        bad = []
        for d, c in self.containers():
            numbers = {p.get("containerPort") for p in c.get("ports") or []}
            names = {p.get("name") for p in c.get("ports") or [] if p.get("name")}
            for probe_kind in ("readinessProbe", "livenessProbe", "startupProbe"):
                probe = c.get(probe_kind) or {}
                for handler in ("grpc", "httpGet", "tcpSocket"):
                    if handler in probe:
                        port = probe[handler].get("port")
                        if port not in numbers and port not in names:
                            bad.append(f"{d['metadata']['name']} {probe_kind}.{handler} port {port}")
        yield not bad, "every probe names a port its container has" + (f" ({bad})" if bad else "")

        bad = []
        for name, d in self.deployed(SERVICES):
            c = first_container(d)
            env = self.effective_env(c)
            ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
            listen = str((env.get("LISTEN_ADDR") or (None, None, ""))[2] or "").rpartition(":")[2]
            metrics = str((env.get("METRICS_ADDR") or (None, None, ""))[2] or "").rpartition(":")[2]
            grpc_probe = ((c.get("readinessProbe") or {}).get("grpc") or {}).get("port")
            annotations = ((d["spec"].get("template") or {}).get("metadata") or {}).get("annotations") or {}
            if not listen.isdigit() or int(listen) != ports.get("grpc") or grpc_probe != ports.get("grpc"):
                bad.append(f"{name}: LISTEN_ADDR port {listen or '(unset)'}, grpc port {ports.get('grpc')}, gRPC readiness probe {grpc_probe}")
            if not metrics.isdigit() or int(metrics) != ports.get("metrics") or annotations.get("prometheus.io/port") != metrics:
                bad.append(f"{name}: METRICS_ADDR port {metrics or '(unset)'}, metrics port {ports.get('metrics')}, "
                           f"prometheus.io/port {annotations.get('prometheus.io/port')}")
            if annotations.get("prometheus.io/scrape") != "true" or annotations.get("prometheus.io/path") != "/metrics":
                bad.append(f"{name}: no Prometheus scrape annotations for /metrics")
        yield not bad, ("each service is probed over gRPC health on the port it listens on, scraped on the port "
                        "it serves /metrics on" + (f" ({bad})" if bad else ""))

        bad = []
        d = self.deployment(GATEWAY)
        if d is None:
            bad.append(f"no {GATEWAY} Deployment")
        else:
            c = first_container(d)
            env = self.effective_env(c)
            ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
            listen = str((env.get("LISTEN_ADDR") or (None, None, ""))[2] or "").rpartition(":")[2]
            metrics = str((env.get("METRICS_ADDR") or (None, None, ""))[2] or "").rpartition(":")[2]
            annotations = ((d["spec"].get("template") or {}).get("metadata") or {}).get("annotations") or {}
            if not listen.isdigit() or int(listen) != ports.get("http"):
                bad.append(f"LISTEN_ADDR port {listen or '(unset)'}, http port {ports.get('http')}")
            for kind, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                get = (c.get(kind) or {}).get("httpGet") or {}
                if get.get("path") != path or get.get("port") not in ("http", ports.get("http")):
                    bad.append(f"{kind}: {get.get('path')} on {get.get('port')} (want {path} on the http port)")
            if not metrics.isdigit() or int(metrics) != ports.get("metrics") or annotations.get("prometheus.io/port") != metrics:
                bad.append(f"METRICS_ADDR port {metrics or '(unset)'}, metrics port {ports.get('metrics')}, "
                           f"prometheus.io/port {annotations.get('prometheus.io/port')}")
            if "TRUSTED_PROXIES" not in env:
                bad.append("no TRUSTED_PROXIES for the ingress in front of it")
            ingresses = [i for i in self.of_kind("Ingress")
                         if any(((p.get("backend") or {}).get("service") or {}).get("name") == GATEWAY
                                for r in (i.get("spec") or {}).get("rules") or []
                                for p in (r.get("http") or {}).get("paths") or [])]
            if not ingresses:
                bad.append("no Ingress routes to it")
        yield not bad, (f"{GATEWAY} is probed over HTTP (/readyz, /healthz) on the port it listens on, scraped on "
                        "its metrics port, behind an Ingress it trusts (TRUSTED_PROXIES)" + (f" ({bad})" if bad else ""))

        bad = []
        for svc in self.of_kind("Service"):
            selector = (svc.get("spec") or {}).get("selector") or {}
            pods = [d for d in self.deployments()
                    if selector and all(((d["spec"]["template"].get("metadata") or {}).get("labels") or {}).get(k) == v
                                        for k, v in selector.items())]
            if not pods:
                bad.append(f"Service/{svc['metadata']['name']} selects no Deployment")
            for d in pods:
                c_ports = [p for c in pod_spec(d).get("containers") or [] for p in c.get("ports") or []]
                for port in svc["spec"].get("ports") or []:
                    target = port.get("targetPort", port.get("port"))
                    if not any(target in (p.get("name"), p.get("containerPort")) for p in c_ports):
                        bad.append(f"Service/{svc['metadata']['name']} targetPort {target}")
        yield not bad, "every Service selects pods and targets ports they have" + (f" ({bad})" if bad else "")

    def discovery(self):
        # Which service calls which peer, through which variable.
        callers = {
            "consignment-service": PEER_VARIABLES,
            "vessel-service": {"USER_SERVICE_URL": "user-service"},
            GATEWAY: {**PEER_VARIABLES, "CONSIGNMENT_SERVICE_URL": "consignment-service"},
        }
        for caller, d in self.deployed(callers):
            env = self.effective_env(first_container(d))
            peers = callers[caller]
            for var, peer in peers.items():
                problem = self.headless_problem(var, str((env.get(var) or (None, None, ""))[2] or ""), peer)
                yield problem is None, f"{caller} finds {peer} through its headless Service ({var})" + (
                    f": {problem}" if problem else "")

    def headless_problem(self, var, value, peer):
        """Why VAR=VALUE does not name PEER's headless Service, or None."""
        match = re.fullmatch(r"dns:///([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local:(\d+)", value)
        if not match:
            return f"{var}={value or '(unset)'} is not dns:///SERVICE.NAMESPACE.svc.cluster.local:PORT"
        svc_name, namespace, port = match.group(1), match.group(2), int(match.group(3))
        svc = self.by.get(("Service", svc_name))
        selector = ((svc or {}).get("spec") or {}).get("selector") or {}
        if svc is None:
            return f"{var}: no Service {svc_name}"
        if namespace != svc["metadata"].get("namespace"):
            return f"{var}: namespace {namespace}, but the Service is in {svc['metadata'].get('namespace')}"
        if svc["spec"].get("clusterIP") != "None":
            return f"{var}: Service {svc_name} is not headless (its DNS name gives one virtual IP)"
        if selector.get("app.kubernetes.io/name") != peer:
            return f"{var}: Service {svc_name} selects {selector}, not {peer}"
        if port not in [p.get("port") for p in svc["spec"].get("ports") or []]:
            return f"{var}: Service {svc_name} has no port {port}"
        return None

    def locked_down(self):
        loose = []
        for name, d in self.deployed(BINARIES):
            pod_sc = pod_spec(d).get("securityContext") or {}
            c = first_container(d)
            sc = c.get("securityContext") or {}
            resources = c.get("resources") or {}
            wants = {
                "runAsNonRoot": pod_sc.get("runAsNonRoot") is True or sc.get("runAsNonRoot") is True,
                "runAsUser 10001 (the image's user)": (sc.get("runAsUser") or pod_sc.get("runAsUser")) == 10001,
                "seccomp RuntimeDefault": ((pod_sc.get("seccompProfile") or sc.get("seccompProfile") or {}).get("type")
                                           == "RuntimeDefault"),
                "readOnlyRootFilesystem": sc.get("readOnlyRootFilesystem") is True,
                "allowPrivilegeEscalation false": sc.get("allowPrivilegeEscalation") is False,
                "capabilities drop ALL": "ALL" in ((sc.get("capabilities") or {}).get("drop") or []),
                "cpu and memory requests and limits": all(
                    k in (resources.get(section) or {}) for section in ("requests", "limits") for k in ("cpu", "memory")),
            }
            loose += [f"{name}: {what}" for what, ok in wants.items() if not ok]
        yield not loose, "every service pod is non-root, read-only, without capabilities, with resources" + (
            f" (missing: {loose})" if loose else "")

    def termination(self):
        short = []
        for name, d in self.deployed(BINARIES):
            grace = pod_spec(d).get("terminationGracePeriodSeconds", 30)
            pre_stop = (((first_container(d).get("lifecycle") or {}).get("preStop") or {})
                        .get("sleep") or {}).get("seconds", 0)
            if grace <= pre_stop + DRAIN_SECONDS[name]:
                short.append(f"{name}: {grace}s <= preStop {pre_stop}s + drain {DRAIN_SECONDS[name]}s")
            if name in PEER_VARIABLES.values() and pre_stop < 10:
                short.append(f"{name}: preStop pause {pre_stop}s < 10s (5 s DNS re-resolution + 5 s DNS TTL)")
        yield not short, "each grace period outlasts the preStop pause and the drain" + (f" ({short})" if short else "")

    def availability(self):
        problems = []
        pdbs = self.of_kind("PodDisruptionBudget")
        hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in self.of_kind("HorizontalPodAutoscaler")}
        for name, d in self.deployed(BINARIES):
            labels = (d["spec"]["template"].get("metadata") or {}).get("labels") or {}
            if not any(all(labels.get(k) == v for k, v in ((p["spec"].get("selector") or {}).get("matchLabels") or {}).items())
                       and (p["spec"].get("selector") or {}).get("matchLabels") for p in pdbs):
                problems.append(f"{name}: no PodDisruptionBudget")
            replicas = d["spec"].get("replicas", 1)
            hpa = hpas.get(name)
            if self.overlay == "production":
                if replicas < 2:
                    problems.append(f"{name}: {replicas} replica")
                cpu = [m for m in (hpa or {}).get("spec", {}).get("metrics") or []
                       if (m.get("resource") or {}).get("name") == "cpu"]
                if not hpa or not cpu or hpa["spec"].get("minReplicas", 1) != replicas:
                    problems.append(f"{name}: no CPU HorizontalPodAutoscaler starting at its {replicas} replicas")
            elif replicas != 1 or hpa:
                problems.append(f"{name}: {replicas} replicas{' and an autoscaler' if hpa else ''} on a laptop")
        what = ("several replicas, a PodDisruptionBudget and a CPU autoscaler each" if self.overlay == "production"
                else "one replica each, a PodDisruptionBudget, no autoscaler")
        yield not problems, what + (f" ({problems})" if problems else "")

    def all(self):
        for check in (self.schemas, self.binaries_and_images, self.environment, self.references,
                      self.secrets_stay_secret, self.ports, self.discovery, self.locked_down,
                      self.termination, self.availability):
            yield from check()


def loopback(var, value):
    """The value pointed at loopback: every host becomes 127.0.0.1 (or
    localhost in a dns:/// URL) on port 1, where nothing listens, and listen
    addresses port 0. No traffic leaves the machine, not even a DNS query."""
    if var in ("LISTEN_ADDR", "METRICS_ADDR"):
        return "127.0.0.1:0"
    if value.startswith("dns:///"):
        return "dns:///localhost:1"
    return re.sub(r"^([a-z][a-z0-9+.-]*://)([^@/]*@)?[^/:?]+(:\d+)?", r"\g<1>\g<2>127.0.0.1:1", value)


def starts(binary, env, limit=60, marker="gRPC server listening"):
    """Runs `binary` with only `env`; None once it logs `marker` (that its
    gRPC server listens: it serves before its database answers), else why not."""
    process = subprocess.Popen([binary], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, errors="replace")
    lines, listening = [], threading.Event()

    def read():
        for line in process.stdout:
            lines.append(line.strip())
            if marker in line:
                listening.set()
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + limit
    while not listening.is_set() and process.poll() is None and time.monotonic() < deadline:
        listening.wait(0.1)
    ok = listening.is_set()
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    reader.join(5)
    if ok:
        return None
    errors = [line for line in lines if line and not line.startswith("{")] or lines
    return (" | ".join(errors[:3]) if process.returncode is not None and errors
            else f"no '{marker}' within {limit}s")[:300]


def binaries_start(checks):
    """Each service binary, run with the dev overlay's rendered configuration
    (ConfigMaps, Secrets, the mounted key file) pointed at loopback, starts:
    the values, not only the names, are ones it accepts."""
    bin_dir = checks.ctx["bin_dir"]
    with tempfile.TemporaryDirectory(prefix="shippy-k8s-run-") as files:
        for name, d in checks.deployed(BINARIES):
            spec = pod_spec(d)
            c = first_container(d)
            env = {"PATH": "/usr/bin:/bin", "HOME": files}
            for var, (source, origin, value) in checks.effective_env(c).items():
                if source == "secret":
                    data = (checks.secret(origin) or {}).get("data") or {}
                    key = next((i["valueFrom"]["secretKeyRef"]["key"] for i in c.get("env") or []
                                if i["name"] == var and "valueFrom" in i), var)
                    value = base64.b64decode(data.get(key, "")).decode() if key in data else None
                if value is None:
                    continue
                env[var] = loopback(var, str(value))
            # A *_FILE variable: the Secret key mounted there, written to a file here.
            volumes = {v.get("name"): v for v in spec.get("volumes") or []}
            for var, value in list(env.items()):
                if not var.endswith("_FILE"):
                    continue
                directory, _, key = value.rpartition("/")
                for m in c.get("volumeMounts") or []:
                    secret = (volumes.get(m.get("name")) or {}).get("secret")
                    if secret and m.get("mountPath", "").rstrip("/") == directory:
                        data = (checks.secret(secret["secretName"]) or {}).get("data") or {}
                        if key in data:
                            path = os.path.join(files, f"{name}-{key}")
                            with open(path, "wb") as f:
                                f.write(base64.b64decode(data[key]))
                            env[var] = path
            # The line waited for is logged at info, whatever the overlay's filter.
            env["RUST_LOG"] = env.get("RUST_LOG", "info") + ",shippy_service::server=info,shippy::started=info"
            # The gateway serves HTTP: its line is the one every binary logs once bound.
            marker = "shippy::started" if name == GATEWAY else "gRPC server listening"
            problem = starts(os.path.join(bin_dir, name), env, marker=marker)
            yield problem is None, f"{name} starts with the overlay's configuration (hosts on loopback)" + (
                f": {problem}" if problem else "")


# Each way of breaking a rendered overlay, and the check that must catch it.
def _container(objects, name):
    return next(o for o in objects if o.get("kind") == "Deployment" and o["metadata"]["name"] == name)["spec"]["template"]["spec"]["containers"][0]


def _configmap(objects, prefix):
    return next(o for o in objects if o.get("kind") == "ConfigMap" and o["metadata"]["name"].startswith(prefix))


def _service(objects, name):
    return next(o for o in objects if o.get("kind") == "Service" and o["metadata"]["name"] == name)


BREAKAGES = [
    ("dev", "a misspelt field", "schemas",
     lambda objs: _container(objs, "vessel-service").update(imagePullPolcy="Always")),
    ("dev", "a variable the binary does not read", "environment",
     lambda objs: _container(objs, "vessel-service")["env"].append({"name": "VESSEL_SERVICE_URLS", "value": "x"})),
    ("dev", "a foreign image", "binaries_and_images",
     lambda objs: _container(objs, "user-service").update(image="docker.io/library/busybox:latest")),
    ("dev", "the gateway's readiness probe on /healthz (not /readyz)", "ports",
     lambda objs: _container(objs, "api-gateway")["readinessProbe"]["httpGet"].update(path="/healthz")),
    ("dev", "a gateway that calls consignment-service through its ClusterIP", "discovery",
     lambda objs: _configmap(objs, "api-gateway-")["data"].update(
         CONSIGNMENT_SERVICE_URL="http://consignment-service.shippy.svc.cluster.local:50051")),
    ("dev", "a readiness probe on a port the container lacks", "ports",
     lambda objs: _container(objs, "vessel-service")["readinessProbe"]["grpc"].update(port=50099)),
    ("dev", "a database URL in a ConfigMap", "secrets_stay_secret",
     lambda objs: _configmap(objs, "vessel-service-").setdefault("data", {}).update(DATABASE_URL="mongodb://u:p@db/shippy")),
    ("dev", "a missing Secret", "references",
     lambda objs: objs.remove(next(o for o in objs if o.get("kind") == "Secret" and o["metadata"]["name"].startswith("user-service-jwt")))),
    ("dev", "a peer behind a ClusterIP Service", "discovery",
     lambda objs: _service(objs, "vessel-service-headless")["spec"].pop("clusterIP")),
    ("dev", "a writable root filesystem", "locked_down",
     lambda objs: _container(objs, "consignment-service")["securityContext"].update(readOnlyRootFilesystem=False)),
    ("dev", "a grace period shorter than the drain", "termination",
     lambda objs: next(o for o in objs if o.get("kind") == "Deployment" and o["metadata"]["name"] == "email-service")
     ["spec"]["template"]["spec"].update(terminationGracePeriodSeconds=30)),
    ("dev", "an autoscaler in dev", "availability",
     lambda objs: objs.append({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                               "metadata": {"name": "user-service"},
                               "spec": {"scaleTargetRef": {"name": "user-service"}}})),
    ("dev", "a key file path no Secret is mounted at", "references",
     lambda objs: _configmap(objs, "user-service-").setdefault("data", {}).update(
         JWT_SIGNING_KEY_FILE="/etc/shippy/signing-key.pem")),
    ("dev", "a value the binary rejects (BCRYPT_COST=3)", "binaries_start",
     lambda objs: _configmap(objs, "user-service-")["data"].update(BCRYPT_COST="3")),
    ("production", "a Secret the docs do not create", "references",
     lambda objs: _container(objs, "vessel-service")["env"].append(
         {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "vessel-store", "key": "DATABASE_URL"}}})),
    ("production", "a second replica missing", "availability",
     lambda objs: next(o for o in objs if o.get("kind") == "Deployment" and o["metadata"]["name"] == "vessel-service")
     ["spec"].update(replicas=1)),
]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubectl", required=True)
    parser.add_argument("bin_dir")
    args = parser.parse_args()
    failed = False

    def report(ok, what):
        nonlocal failed
        print(("ok - " if ok else "not ok - ") + what)
        failed |= not ok

    import kubernetes_validate.utils as kv_utils
    client = subprocess.run([args.kubectl, "version", "--client", "-o", "yaml"], capture_output=True, text=True)
    git_version = ((yaml.safe_load(client.stdout or "{}") or {}).get("clientVersion") or {}).get("gitVersion", "")
    schema_version = ".".join(git_version.lstrip("v").split(".")[:2])
    shipped = {kv_utils.major_minor(v) for v in kv_utils.all_versions()}
    report(schema_version in shipped,
           f"kubernetes-validate ships the schemas of kubectl's Kubernetes version ({schema_version or 'unknown'})")

    ctx = {
        "schema_version": schema_version,
        "version": workspace_version(),
        "infra_images": compose_images(),
        "bin_dir": args.bin_dir,
        "env": {name: env_names(os.path.join(args.bin_dir, name)) for name in BINARIES},
        "docs": open(os.path.join(ROOT, "docs", "kubernetes.md")).read()
        if os.path.exists(os.path.join(ROOT, "docs", "kubernetes.md")) else "",
    }

    # No private key is committed: the dev overlay's is generated (cargo dev k8s dev-key).
    listed = subprocess.run(["git", "-C", ROOT, "ls-files", "-z", "deploy/kubernetes"], capture_output=True, text=True)
    tracked = [p for p in listed.stdout.split("\0") if p]
    if listed.returncode != 0:  # not a git checkout: every file but the generated key
        tracked = [os.path.relpath(os.path.join(d, f), ROOT) for d, _, files in os.walk(DEPLOY)
                   for f in files if f != "jwt-signing-key.pem"]
    keys = [p for p in tracked if os.path.isfile(os.path.join(ROOT, p))
            and "PRIVATE KEY" in open(os.path.join(ROOT, p), errors="replace").read()]
    report(bool(tracked) and not keys, "no private key is committed under deploy/kubernetes" + (f" ({keys})" if keys else ""))

    # Render a copy, with a throwaway dev key when none was generated: the real
    # one stays the developer's own.
    work = tempfile.mkdtemp(prefix="shippy-k8s-")
    rendered = {}
    try:
        tree = os.path.join(work, "kubernetes")
        shutil.copytree(DEPLOY, tree)
        key = os.path.join(tree, "overlays", "dev", "jwt-signing-key.pem")
        if not os.path.exists(key):
            with open(key, "w") as f:
                f.write(throwaway_ed25519_pem())
        for overlay in OVERLAYS:
            objects, error = render(args.kubectl, os.path.join(tree, "overlays", overlay))
            report(objects is not None, f"kubernetes {overlay}: kubectl kustomize renders the overlay"
                   + (f" ({len(objects)} objects)" if objects else f": {error}"))
            if objects is not None:
                rendered[overlay] = objects
                checks = Checks(overlay, objects, ctx)
                for ok, what in checks.all():
                    report(ok, f"kubernetes {overlay}: {what}")
                if overlay == "dev":  # production's Secrets are not in the repository
                    for ok, what in binaries_start(checks):
                        report(ok, f"kubernetes {overlay}: {what}")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    # The checks can fail: each breakage of a rendered overlay must be caught,
    # by a failure the unbroken overlay does not have.
    def failures(overlay, objects, check):
        checks = Checks(overlay, objects, ctx)
        run = binaries_start(checks) if check == "binaries_start" else getattr(checks, check)()
        return [message for ok, message in run if not ok]

    baseline = {}
    for overlay, what, check, breaks in BREAKAGES:
        if overlay in rendered:
            if (overlay, check) not in baseline:
                baseline[overlay, check] = set(failures(overlay, rendered[overlay], check))
            objects = copy.deepcopy(rendered[overlay])
            breaks(objects)
            caught = [m for m in failures(overlay, objects, check) if m not in baseline[overlay, check]]
            report(bool(caught), f"kubernetes self-test: {check} catches {what}"
                   + (f" (…{caught[0][-120:]})" if caught else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
