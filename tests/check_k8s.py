#!/usr/bin/env python3
"""check_k8s.py - checks deploy/k8s/ offline, without a cluster.

What it checks:
 1. every file parses as YAML (python3-yaml) and every document has
    apiVersion, kind and metadata.name;
 2. every object against the Kubernetes API's own models (python3-kubernetes,
    generated from the API's OpenAPI schema; not ours): no field the API
    does not know, every required field present (the models refuse None),
    and ints, strings and booleans where the schema says so;
 3. the references between the manifests: the ConfigMaps, Secrets (and
    their keys), PVCs, volumes and ports that pods name exist; Service and
    Deployment selectors match their pods' labels; kustomization.yaml lists
    the manifests and every file it lists exists;
 4. against the programs (--bin DIR): every --option in a container's
    command is in that program's --help, and the worker runs with
    --keep-serving, one BLAS thread, one core, and a liveness probe on the
    file given to --alive-file.
What it does not check: anything a cluster decides (admission, scheduling,
storage classes, whether the image runs there).

Usage: check_k8s.py DIR [--bin BUILD_DIR] [--rendered FILE]   (exit 0: ok, 1: problems)
--rendered: also check FILE, the output of `kubectl kustomize DIR`.
"""
import argparse
import os
import re
import subprocess
import sys

import yaml
from kubernetes import client

problems = []


def problem(where, what):
    problems.append(f"{where}: {what}")


PRIMITIVE = {"str": str, "int": int, "bool": bool, "float": (int, float)}


def check_value(where, value, typ):
    """Checks value against an OpenAPI type string of the python models."""
    if value is None:
        return
    m = re.fullmatch(r"list\[(.+)\]", typ)
    if m:
        if not isinstance(value, list):
            return problem(where, f"a list expected, got {type(value).__name__}")
        for i, v in enumerate(value):
            check_value(f"{where}[{i}]", v, m.group(1))
        return
    m = re.fullmatch(r"dict\(str, (.+)\)", typ)
    if m:
        if not isinstance(value, dict):
            return problem(where, f"a map expected, got {type(value).__name__}")
        for k, v in value.items():
            check_value(f"{where}.{k}", v, m.group(1))
        return
    if typ in PRIMITIVE:
        ok = isinstance(value, PRIMITIVE[typ]) and not (typ != "bool" and isinstance(value, bool))
        if not ok:
            problem(where, f"{typ} expected, got {type(value).__name__} {value!r}")
        return
    if typ in ("object", "datetime", "date"):
        return
    klass = getattr(client, typ, None)
    if klass is None:
        return problem(where, f"no model {typ} in python3-kubernetes")
    if not isinstance(value, dict):
        return problem(where, f"an object ({typ}) expected, got {type(value).__name__}")
    by_json = {j: a for a, j in klass.attribute_map.items()}
    for k, v in value.items():
        if k not in by_json:
            problem(where, f"unknown field '{k}' for {typ}")
        else:
            check_value(f"{where}.{k}", v, klass.openapi_types[by_json[k]])


def check_model(where, doc):
    """Schema check, then the models' own required-field validation."""
    group_version = doc.get("apiVersion", "")
    version = group_version.split("/")[-1]
    typ = version.capitalize() + doc.get("kind", "")
    if getattr(client, typ, None) is None:
        return problem(where, f"no Kubernetes model for {group_version} {doc.get('kind')}")
    check_value(where, doc, typ)
    try:
        client.ApiClient()._ApiClient__deserialize(doc, typ)
    except (ValueError, TypeError) as e:
        problem(where, f"the API model refuses it: {e}")


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def pod_specs(doc):
    kind = doc.get("kind")
    if kind in ("Deployment", "StatefulSet", "Job", "DaemonSet"):
        return [doc["spec"]["template"]]
    return []


def options_of(program, bindir):
    out = subprocess.run([os.path.join(bindir, program), "--help"], capture_output=True, text=True).stdout
    return set(re.findall(r"--[a-z][a-z0-9-]*", out))


def check_refs(docs, bindir):
    objs = {(d["kind"], d["metadata"]["name"]): d for _, d in docs}
    def exists(kind, name, where):
        if (kind, name) not in objs:
            problem(where, f"{kind} '{name}' is not defined in deploy/k8s")
            return None
        return objs[(kind, name)]
    def has_key(kind, name, key, where):
        o = exists(kind, name, where)
        if o is not None and key not in {**o.get("data", {}), **o.get("stringData", {})}:
            problem(where, f"{kind} '{name}' has no key '{key}'")
    for path, d in docs:
        where = f"{os.path.basename(path)} {d['kind']}/{d['metadata']['name']}"
        if d["kind"] == "Service":
            sel = d["spec"].get("selector", {})
            pods = [t for _, o in docs for t in pod_specs(o)
                    if sel and all(t["metadata"].get("labels", {}).get(k) == v for k, v in sel.items())]
            if not pods:
                problem(where, f"selector {sel} matches no pod template")
            for p in d["spec"]["ports"]:
                tp = p.get("targetPort")
                if isinstance(tp, str) and not any(tp == cp.get("name") for t in pods
                                                   for c in t["spec"]["containers"] for cp in c.get("ports", [])):
                    problem(where, f"targetPort '{tp}' is no container port of its pods")
        if d["kind"] in ("Deployment", "StatefulSet"):
            ml = d["spec"]["selector"].get("matchLabels", {})
            labels = d["spec"]["template"]["metadata"].get("labels", {})
            if any(labels.get(k) != v for k, v in ml.items()):
                problem(where, f"selector {ml} does not match its template's labels {labels}")
        for t in pod_specs(d):
            spec = t["spec"]
            vols = {v["name"]: v for v in spec.get("volumes", [])}
            for v in vols.values():
                if "persistentVolumeClaim" in v:
                    exists("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"], where)
                if "secret" in v:
                    for it in v["secret"].get("items", []):
                        has_key("Secret", v["secret"]["secretName"], it["key"], where)
            claims = {c["metadata"]["name"] for c in d["spec"].get("volumeClaimTemplates", [])}
            for c in spec.get("initContainers", []) + spec["containers"]:
                cw = f"{where} container {c['name']}"
                for m in c.get("volumeMounts", []):
                    if m["name"] not in vols and m["name"] not in claims:
                        problem(cw, f"mounts volume '{m['name']}', which the pod does not define")
                for e in c.get("envFrom", []):
                    if "secretRef" in e:
                        exists("Secret", e["secretRef"]["name"], cw)
                    if "configMapRef" in e:
                        exists("ConfigMap", e["configMapRef"]["name"], cw)
                for e in c.get("env", []):
                    vf = e.get("valueFrom", {})
                    if "secretKeyRef" in vf:
                        has_key("Secret", vf["secretKeyRef"]["name"], vf["secretKeyRef"]["key"], cw)
                    if "configMapKeyRef" in vf:
                        has_key("ConfigMap", vf["configMapKeyRef"]["name"], vf["configMapKeyRef"]["key"], cw)
                if c["image"].split(":")[0] not in ("tokshift", "docker.io/library/postgres"):
                    problem(cw, f"image '{c['image']}': the manifests name the image 'tokshift' (kustomization.yaml maps it)")
                if bindir and c["image"] == "tokshift":
                    check_command(cw, c, bindir)
    worker = objs.get(("Deployment", "tokshift-worker"))
    if worker is None:
        problem("worker.yaml", "no Deployment tokshift-worker")
    else:
        check_worker(worker)


def command_text(c):
    return " ".join(c.get("command", []) + c.get("args", []))


def check_command(where, c, bindir):
    text = command_text(c)
    for program in ("tokshift-coordinator", "tokshift-worker"):
        m = re.search(r"(?:^|[\s;&])" + program + r"(\s.*|$)", text)
        if m:
            known = options_of(program, bindir)
            if not known:
                problem(where, f"{program} --help printed no options (is {bindir} a build folder?)")
            for opt in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", m.group(1)):
                if opt not in known:
                    problem(where, f"{program} has no option {opt}")


def check_worker(d):
    where = "worker.yaml Deployment/tokshift-worker"
    c = d["spec"]["template"]["spec"]["containers"][0]
    text = command_text(c)
    if "--keep-serving" not in text:
        problem(where, "the worker does not run with --keep-serving")
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    if env.get("OPENBLAS_NUM_THREADS") != "1":
        problem(where, "OPENBLAS_NUM_THREADS is not 1 (one single-threaded worker per core)")
    req = c.get("resources", {}).get("requests", {})
    if str(req.get("cpu")) != "1" or str(c.get("resources", {}).get("limits", {}).get("cpu")) != "1":
        problem(where, f"a worker should request and be limited to one core: {c.get('resources')}")
    m = re.search(r"--alive-file\s+(\S+)", text)
    probe = " ".join(c.get("livenessProbe", {}).get("exec", {}).get("command", []))
    if not m:
        problem(where, "the worker has no --alive-file")
    elif m.group(1) not in probe:
        problem(where, f"the liveness probe does not read the --alive-file {m.group(1)}: {probe!r}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--bin")
    ap.add_argument("--rendered")
    a = ap.parse_args()
    files = sorted(f for f in os.listdir(a.dir) if f.endswith((".yaml", ".yml")))
    docs = []
    kustomization = None
    for f in files:
        path = os.path.join(a.dir, f)
        try:
            ds = load(path)
        except yaml.YAMLError as e:
            problem(f, f"not YAML: {e}")
            continue
        for i, d in enumerate(ds):
            where = f"{f} document {i + 1}"
            if not isinstance(d, dict) or not d.get("apiVersion") or not d.get("kind"):
                problem(where, "no apiVersion or kind")
                continue
            if d["kind"] == "Kustomization":
                kustomization = (f, d)
                continue
            if not d.get("metadata", {}).get("name"):
                problem(where, "no metadata.name")
                continue
            check_model(f"{f} {d['kind']}/{d['metadata']['name']}", d)
            docs.append((path, d))
    if kustomization is None:
        problem(a.dir, "no kustomization.yaml")
    else:
        listed = kustomization[1].get("resources", [])
        for r in listed:
            if not os.path.isfile(os.path.join(a.dir, r)):
                problem("kustomization.yaml", f"lists {r}, which does not exist")
        for f in files:
            if f not in listed and f != kustomization[0] and not re.search(r"example", f):
                problem("kustomization.yaml", f"does not list {f} (only *example* files stay out)")
    if not problems:  # the references are looked up in well-formed objects only
        check_refs(docs, a.bin)
    n_rendered = 0
    if a.rendered:
        for d in load(a.rendered):
            n_rendered += 1
            check_model(f"rendered {d.get('kind')}/{d.get('metadata', {}).get('name')}", d)
            if d.get("kind") != "Namespace" and d.get("metadata", {}).get("namespace") != "tokshift":
                problem(f"rendered {d.get('kind')}", "not in the namespace tokshift")
    for p in problems:
        print("FAIL:", p)
    if problems:
        return 1
    print(f"check_k8s: ok ({len(docs)} objects in {len(files)} files"
          + (f", {n_rendered} rendered by kubectl kustomize" if a.rendered else "") + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
