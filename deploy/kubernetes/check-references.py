#!/usr/bin/env python3
"""Checks what a schema cannot: that the manifests in this directory agree with each other.

Every ConfigMap, Secret and key a pod mounts or reads exists; the probes ask for /healthz on a
port the container declares; the Service selects the pods and the ServiceMonitor selects the
Service and scrapes /metrics on one of its ports; backstop.toml listens on that port on every
interface. Exits 1 naming each problem."""
import glob
import os
import sys

import yaml

here = os.path.dirname(os.path.abspath(__file__))
docs = []
for path in sorted(glob.glob(os.path.join(here, "*.yaml"))):
    with open(path) as f:
        docs += [(os.path.basename(path), d) for d in yaml.safe_load_all(f) if d]
by_kind = {}
for name, d in docs:
    by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = (name, d)
problems = []


def problem(file, text):
    problems.append(f"deploy/kubernetes/{file}: {text}")


def keys_of(kind, name):
    d = by_kind.get(kind, {}).get(name)
    if d is None:
        return None
    body = d[1]
    return set(body.get("data") or {}) | set(body.get("stringData") or {})


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


services = by_kind.get("Service", {})
for name, (file, sts) in by_kind.get("StatefulSet", {}).items():
    pod = sts["spec"]["template"]
    spec = pod["spec"]
    labels = pod["metadata"]["labels"]
    if not selects(sts["spec"]["selector"]["matchLabels"], labels):
        problem(file, f"{name}: the selector does not match the pod's labels")
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    claims = {c["metadata"]["name"] for c in sts["spec"].get("volumeClaimTemplates", [])}
    for container in spec["containers"]:
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        for probe in ("livenessProbe", "readinessProbe"):
            get = container.get(probe, {}).get("httpGet")
            if not get:
                problem(file, f"{name}: {probe} is missing")
            elif get["path"] != "/healthz" or get["port"] not in ports:
                problem(file, f"{name}: {probe} must ask for /healthz on a declared port")
        for source in container.get("envFrom", []):
            ref = source.get("secretRef", {}).get("name")
            if ref and keys_of("Secret", ref) is None:
                problem(file, f"{name}: envFrom names the Secret {ref}, which is not here")
        for mount in container.get("volumeMounts", []):
            volume = volumes.get(mount["name"])
            if volume is None:
                if mount["name"] not in claims:
                    problem(file, f"{name}: the mount {mount['name']} has no volume")
                continue
            for kind, field, key in (("ConfigMap", "configMap", "name"), ("Secret", "secret", "secretName")):
                if field in volume:
                    ref = volume[field][key]
                    keys = keys_of(kind, ref)
                    if keys is None:
                        problem(file, f"{name}: the volume {mount['name']} names the {kind} {ref}, which is not here")
                    elif "subPath" in mount and mount["subPath"] not in keys:
                        problem(file, f"{name}: the {kind} {ref} has no key {mount['subPath']}")
    if not any(selects(s["spec"]["selector"], labels) for _, s in services.values()):
        problem(file, f"{name}: no Service selects its pods")
    config = keys_of("ConfigMap", "backstop-config")
    toml_text = by_kind["ConfigMap"]["backstop-config"][1]["data"].get("backstop.toml", "") if config else ""
    for port in ports.values():
        if f'listen = "0.0.0.0:{port}"' not in toml_text:
            problem("configmap.yaml", f"backstop.toml must listen on 0.0.0.0:{port}, the container's port")

for name, (file, monitor) in by_kind.get("ServiceMonitor", {}).items():
    matched = [s for _, s in services.values() if selects(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
    if not matched:
        problem(file, f"{name}: selects no Service")
    for endpoint in monitor["spec"]["endpoints"]:
        if endpoint.get("path") != "/metrics":
            problem(file, f"{name}: an endpoint does not scrape /metrics")
        if not any(endpoint["port"] in {p["name"] for p in s["spec"]["ports"]} for s in matched):
            problem(file, f"{name}: the port {endpoint['port']} is not a port of the Service")

for p in problems:
    print(p, file=sys.stderr)
if problems:
    sys.exit(1)
print(f"deploy/kubernetes: {len(docs)} resources refer to each other consistently")
