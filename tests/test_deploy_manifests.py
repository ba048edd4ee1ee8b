"""The Dockerfile, .dockerignore and the Kubernetes/KServe manifests under deploy/kubernetes/.

Nothing here has a Docker engine or a cluster, so the checks are the ones that hold without
them: every argument list parses with edgeport's own CLI parser into what the manifests assume
(host, port, threads, the drain's length, read from the real `cmd_serve` with uvicorn stubbed),
the ports agree everywhere, the probes name routes of the real app and answer as the probes need
(liveness 200 while the model is not loaded, readiness 503), and serving reads nothing that the
image does not get.

Structural checks, not the Kubernetes schema: the `kubernetes` Python client would add a dozen
pinned packages to the lock, and its model classes drop unknown fields and check no values, so
it would catch little of what these tests do; the schema is checked by the API server
(`kubectl apply --dry-run=server`), which needs a cluster. A key allowlist below catches the
typos that would silently disable a probe.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import fnmatch
import hashlib
import json
import os
import posixpath
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import REPO

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
SERVE_YAML = REPO / "deploy" / "kubernetes" / "edgeport-serve.yaml"
KSERVE_YAML = REPO / "deploy" / "kubernetes" / "kserve-inferenceservice.yaml"

# Fields of core/v1 Container, Probe and HTTPGetAction (Kubernetes API reference): a misspelt
# `readinesProbe` is otherwise just ignored by these tests, and by older kubectl too.
CONTAINER_FIELDS = {"name", "image", "command", "args", "workingDir", "ports", "envFrom", "env", "resources",
                    "resizePolicy", "restartPolicy", "volumeMounts", "volumeDevices", "livenessProbe",
                    "readinessProbe", "startupProbe", "lifecycle", "terminationMessagePath",
                    "terminationMessagePolicy", "imagePullPolicy", "securityContext", "stdin", "stdinOnce", "tty"}
PROBE_FIELDS = {"exec", "httpGet", "tcpSocket", "grpc", "initialDelaySeconds", "timeoutSeconds", "periodSeconds",
                "successThreshold", "failureThreshold", "terminationGracePeriodSeconds"}
HTTP_GET_FIELDS = {"path", "port", "host", "scheme", "httpHeaders"}
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


# -- reading the files ---------------------------------------------------------------------------

def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, rest) in order; comment lines dropped before continuations are joined, as Docker does."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip() if " " in line.strip() else "")
            for line in (raw.strip() for raw in joined.splitlines()) if line]


def build_args() -> dict[str, str]:
    """The Dockerfile's ARG defaults, expanded (${NAME} of an earlier ARG)."""
    args: dict[str, str] = {}
    for word, rest in dockerfile():
        if word == "ARG":
            name, _, default = rest.partition("=")
            args[name] = expand(default, args)
    return args


def expand(text: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables[m.group(1) or m.group(2)], text)


def instruction(word: str) -> list[str]:
    return [rest for w, rest in dockerfile() if w == word]


def exec_form(word: str) -> list[str]:
    """ENTRYPOINT or CMD, which must be in exec (JSON) form: shell form would put /bin/sh in
    front of the server as PID 1, and SIGTERM would not reach it (no drain)."""
    (rest,) = instruction(word)
    value = json.loads(rest)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"{word} not in exec form: {rest}"
    return value


def copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY, build args expanded."""
    out = []
    for rest in instruction("COPY"):
        words = [w for w in rest.split() if not w.startswith("--")]
        out.append(([expand(w, build_args()) for w in words[:-1]], expand(words[-1], build_args())))
    return out


def manifests(path: Path) -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    kinds = [d["kind"] for d in docs]
    assert len(set(kinds)) == len(kinds), f"{path.name}: one document per kind expected, got {kinds}"
    return {d["kind"]: d for d in docs}


def deployment() -> dict[str, Any]:
    return manifests(SERVE_YAML)["Deployment"]


def the_container(pod_spec: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod_spec["containers"]
    return container


def cpus(quantity: str | int | float) -> float:
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def port_number(port: str | int, container: dict[str, Any]) -> int:
    """A probe's or Service's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container["ports"] if "name" in p}
    assert port in named, f"port {port!r} names none of the container's ports {named}"
    return named[port]


def parse_serve(argv: list[str]) -> argparse.Namespace:
    """``argv`` (ENTRYPOINT + CMD or args, starting at `edgeport`) as edgeport's CLI parses it."""
    from edgeport import cli

    assert argv[:2] == ["edgeport", "serve"], argv
    ns = cli.build_parser().parse_args(argv[1:])
    assert ns.func is cli.cmd_serve
    return ns


def image_argv(args: list[str]) -> list[str]:
    """What a container runs with ``args`` given (Kubernetes `args` replace the image's CMD)."""
    return exec_form("ENTRYPOINT") + args


def prestop_seconds(container: dict[str, Any]) -> int:
    pre = container["lifecycle"]["preStop"]
    if "sleep" in pre:
        return int(pre["sleep"]["seconds"])
    command = pre["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2, command
    return int(command[1])


# -- .dockerignore, with Docker's rules ----------------------------------------------------------

def ignore_rules() -> list[tuple[bool, list[str]]]:
    """(is an exception "!", pattern split on "/"), in order. Docker cleans each pattern: no
    leading or trailing slash."""
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = posixpath.normpath(line.lstrip("!").strip("/"))
        rules.append((negated, pattern.split("/")))
    return rules


def _match(pattern: list[str], parts: list[str]) -> bool:
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_match(pattern[1:], parts[i:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and _match(pattern[1:], parts[1:])


def in_context(rel: str) -> bool:
    """Whether `docker build .` sends the file ``rel`` (relative to the repository root): the last
    pattern that matches it or one of its parent folders decides (moby's MatchesOrParentMatches)."""
    parts = rel.split("/")
    sent = True
    for negated, pattern in ignore_rules():
        if any(_match(pattern, parts[:n]) for n in range(1, len(parts) + 1)):
            sent = negated
    return sent


# -- a served model that needs no export: a 3-weight ONNX classifier and the files serving reads ---

@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    """What `edgeport export` + `edgeport validate` leave for one variant, named like the image's
    model folder. Its report points at an evaluation folder, which serving must not read."""
    import onnx
    from onnx import TensorProto, helper

    folder = tmp_path_factory.mktemp("image") / build_args()["MODEL_NAME"]
    folder.mkdir()
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["pixel_values"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("MatMul", ["flat", "w"], ["logits"])],
        "tiny", [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor("w", TensorProto.FLOAT, [3, 2], [1.0, -1.0, 0.5, 0.5, -1.0, 1.0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    onnx.save(model, folder / "model.onnx")
    sha = hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()
    name = build_args()["MODEL_NAME"]
    (folder / "manifest.json").write_text(json.dumps({"model": name, "variants": [
        {"name": "onnx-fp32", "runtime": "onnxruntime", "path": "model.onnx", "sha256": sha}]}))
    (folder / "report.json").write_text(json.dumps({
        "model": name, "eval_set": {"path": str(REPO / "tests" / "data" / "faces")}, "machine": {},
        "variants": [{"name": "pytorch", "runtime": "torch", "passed": True, "status": "passed"},
                     {"name": "onnx-fp32", "runtime": "onnxruntime", "path": "model.onnx", "passed": True,
                      "status": "passed", "latency_ms": {"p50": 1.0}}]}))
    (folder / "config.json").write_text(json.dumps({"model_type": "vit", "num_channels": 3,
                                                    "id2label": {"0": "female", "1": "male"}}))
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "ViTImageProcessor", "do_resize": True, "size": {"height": 8, "width": 8},
        "resample": 2, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "do_convert_rgb": True}))
    # as `edgeport export` records them: the processor's steps, checked against it at export
    from edgeport.validation.preprocess import Preprocessing

    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["preprocessing"] = Preprocessing.from_file(folder / "preprocessor_config.json").to_dict()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "mobile").mkdir()  # left out of the image by .dockerignore: serving must not need it
    return folder


def run_cmd_serve(argv: list[str], model_dir: Path, monkeypatch) -> tuple[dict[str, Any], Any]:
    """edgeport's real `cmd_serve` on ``argv`` (model folder swapped for ``model_dir``) up to the
    point where it starts uvicorn: returns what it passes to ``uvicorn.run`` and the app."""
    import uvicorn

    ns = parse_serve(argv)
    ns.model_dir = model_dir
    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.update(kwargs, app=app))
    assert ns.func(ns) == 0
    return seen, seen.pop("app")


async def asgi_get(app, path: str) -> int:
    """Status of GET ``path``, sent through the ASGI app as uvicorn would."""
    sent: list[dict[str, Any]] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
             "headers": [(b"host", b"replica")], "client": ("10.0.0.1", 40000), "server": ("10.0.0.2", 8080)}
    await app(scope, receive, send)
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


@contextlib.asynccontextmanager
async def lifespan(app):
    """The app started and stopped through the ASGI lifespan protocol, as uvicorn does."""
    inbox: asyncio.Queue = asyncio.Queue()
    outbox: asyncio.Queue = asyncio.Queue()
    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                                   inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
        await task


# -- Dockerfile ---------------------------------------------------------------------------------

def test_the_image_runs_edgeport_serve_on_the_exposed_port_as_a_non_root_user():
    assert instruction("FROM") == ["python:3.11-slim"]
    argv = image_argv(exec_form("CMD"))
    ns = parse_serve(argv)
    assert ns.host == "0.0.0.0", "inside a container 127.0.0.1 is unreachable from outside it"
    (exposed,) = instruction("EXPOSE")
    assert exposed == str(ns.port) == "8080"
    model_copy = [dest for sources, dest in copies() if sources == [build_args()["MODEL_DIR"]]]
    assert model_copy == [str(ns.model_dir)], "the CMD must serve the folder the model is copied to"
    assert ns.model_dir.parent == Path("/models")
    assert ns.threads is not None, "without --threads edgeport reads edgeport.toml, which the image lacks"
    assert ns.workers == 1
    (user,) = instruction("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "runAsNonRoot needs a numeric, non-zero USER"


def test_the_image_installs_edgeport_serve_pinned_by_the_lock():
    """The image holds `edgeport[serve]` (no torch, transformers or TensorFlow), installed by pip's
    resolver with the lock as constraints; every package that install can pull in is pinned there,
    so the image runs the tested versions."""
    from importlib.metadata import distribution

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    bootstrap = (REPO / "scripts" / "bootstrap-venv.sh").read_text()
    pip_pin = re.search(r"pip==[\d.]+", bootstrap).group(0)
    runs = [" ".join(r.split()) for r in instruction("RUN")]
    installs = [r for r in runs if "pip install -c requirements.lock" in r]
    assert len(installs) == 1, runs
    assert f"--upgrade {pip_pin}" in installs[0] and '".[serve]"' in installs[0]
    assert "--no-deps" not in installs[0] and "--ignore-requires-python" not in installs[0]
    lock = {canonicalize_name(line.split("==")[0]) for line in (REPO / "requirements.lock").read_text().splitlines()
            if "==" in line and not line.startswith("#")}
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = {"python_version": "3.11", "sys_platform": "linux", "platform_machine": "x86_64", "extra": ""}
    pending = [Requirement(r) for r in pyproject["dependencies"] + pyproject["optional-dependencies"]["serve"]]
    pulled: set[str] = set()
    while pending:  # what pip resolves for [serve] on the image's Linux x86_64 Python 3.11
        req = pending.pop()
        name = canonicalize_name(req.name)
        if name in pulled or (req.marker and not req.marker.evaluate(env)):
            continue
        pulled.add(name)
        pending += [Requirement(r) for r in distribution(name).requires or []]
    assert {"onnxruntime", "fastapi", "uvicorn", "ai-edge-litert", "numpy"} <= pulled
    assert not pulled & {"torch", "transformers", "tensorflow", "tensorflow-cpu", "openvino"}, sorted(pulled)
    assert pulled <= lock, f"not pinned by requirements.lock: {sorted(pulled - lock)}"


def test_the_image_copies_the_installed_packages_and_one_model_folder():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    # the repository folders the wheel installs (as edgeport.converters, ...)
    packages = set(pyproject["tool"]["setuptools"]["package-dir"].values())
    assert len(packages) == len(pyproject["tool"]["setuptools"]["packages"])
    code = {s for sources, _ in copies() for s in sources} - {build_args()["MODEL_DIR"]}
    assert code == packages | {"requirements.lock", "pyproject.toml", pyproject["project"]["readme"]}
    assert build_args()["MODEL_DIR"] == "artifacts/gender-vit"
    for sources, dest in copies():  # each package to its own name, so that `pip install .` finds it
        if sources[0] in packages:
            assert sources == [sources[0]] and posixpath.normpath(dest) == sources[0]


def test_the_build_context_holds_what_the_image_copies_and_nothing_else():
    copied = {s for sources, _ in copies() for s in sources}
    for entry in REPO.iterdir():  # a new top-level folder stays out unless the Dockerfile copies it
        probe = entry.name if entry.is_file() else f"{entry.name}/some-file"
        assert in_context(probe) == (entry.name in copied), entry.name
    packages = [s for s in copied if (REPO / s).is_dir()]
    for package in packages:
        for f in (REPO / package).rglob("*.py"):
            if "__pycache__" not in f.parts:
                assert in_context(f.relative_to(REPO).as_posix()), f
        assert not in_context(f"{package}/__pycache__/app.cpython-311.pyc")
    model = build_args()["MODEL_DIR"]
    for rel in ("manifest.json", "report.json", "report.md", "config.json", "preprocessor_config.json",
                "model.onnx", "model_int8.tflite", "savedmodel/saved_model.pb", "savedmodel/variables/variables.index"):
        assert in_context(f"{model}/{rel}"), rel
    assert not in_context(f"{model}/mobile/model_int8.tflite")
    for rel in (".venv/bin/python", ".git/HEAD", "tests/data/faces/female/1.jpg", "data/eval/gender/male/2.jpg",
                "artifacts/bench-serve/vit-b16/serve.log", "artifacts/other-model/model.onnx", "edgeport.toml"):
        assert not in_context(rel), rel


def test_serving_reads_only_the_model_folder_and_the_installed_packages(model_folder, tmp_path):
    """Everything `edgeport serve` with the image's CMD opens from start to shutdown (audit hook on
    `open`; uvicorn.run replaced by the ASGI lifespan), in a fresh process outside the repository
    as in the image: within the repository only the packages the image installs, within the model
    folder only files the build context holds; so never the evaluation set report.json names."""
    script = textwrap.dedent("""
        import asyncio, json, os, sys
        opened = []
        sys.addaudithook(lambda event, args: opened.append(os.fsdecode(args[0]))
                         if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)) else None)
        import uvicorn

        async def start_and_stop(app):  # the ASGI lifespan, as uvicorn drives it, without a socket
            inbox, outbox = asyncio.Queue(), asyncio.Queue()
            task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                                           inbox.get, outbox.put))
            for step in ("startup", "shutdown"):
                await inbox.put({"type": "lifespan." + step})
                assert (await outbox.get())["type"] == f"lifespan.{step}.complete"
            await task

        uvicorn.run = lambda app, **kwargs: asyncio.run(start_and_stop(app))
        from edgeport.cli import main
        assert main(sys.argv[1:]) == 0
        modules = [m.__file__ for m in list(sys.modules.values()) if getattr(m, "__file__", None)]
        print(json.dumps({"opened": opened, "modules": modules}))
    """)
    args = exec_form("CMD")
    env = {**os.environ, "USE_TF": "0", "HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([sys.executable, "-c", script, "serve", str(model_folder), *args[1:]], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    venv = Path(sys.prefix).resolve()
    copied = {s for sources, _ in copies() for s in sources}
    model_files, repo_files = set(), set()
    for name in seen["opened"] + seen["modules"]:
        path = (tmp_path / name).resolve()
        if path.is_relative_to(model_folder.resolve()):
            model_files.add(path.relative_to(model_folder.resolve()).as_posix())
        elif path.is_relative_to(REPO) and not path.is_relative_to(venv):
            repo_files.add(path.relative_to(REPO).as_posix())
    assert {"manifest.json", "report.json", "config.json"} <= model_files
    # the preprocessing comes from the manifest's recorded steps: serving imports no torch,
    # transformers or TensorFlow (issue #31: a serving install without them)
    heavy = {m.split("/site-packages/")[1].split("/")[0] for m in seen["modules"] if "/site-packages/" in m}
    assert not heavy & {"torch", "transformers", "tensorflow", "tf_keras", "optimum"}, sorted(heavy)
    for rel in model_files:
        assert in_context(f"{build_args()['MODEL_DIR']}/{rel}"), f"serving read {rel}, which the image lacks"
    assert repo_files, "expected the edgeport packages to be imported from the repository"
    for rel in repo_files:
        assert rel.split("/")[0] in copied, f"serving read {rel}, which the image lacks"


# -- Kubernetes Deployment and Service -----------------------------------------------------------

def test_the_deployment_and_service_fit_together():
    docs = manifests(SERVE_YAML)
    assert set(docs) == {"Deployment", "Service"}
    dep, svc = docs["Deployment"], docs["Service"]
    assert (dep["apiVersion"], svc["apiVersion"]) == ("apps/v1", "v1")
    assert dep["spec"]["replicas"] >= 2, "scale-out: more than one replica"
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items(), "the selector must pick the pods"
    assert svc["spec"]["selector"].items() <= labels.items(), "the Service must pick the Deployment's pods"
    assert svc["spec"].get("type", "ClusterIP") == "ClusterIP"
    container = the_container(dep["spec"]["template"]["spec"])
    ns = parse_serve(image_argv(container["args"]))
    (port,) = svc["spec"]["ports"]
    assert port["port"] == 80
    assert port_number(port["targetPort"], container) == ns.port
    assert [p["containerPort"] for p in container["ports"]] == [ns.port]
    assert instruction("EXPOSE") == [str(ns.port)]
    assert ns.host == "0.0.0.0"


def test_the_deployment_serves_what_the_image_serves():
    container = the_container(deployment()["spec"]["template"]["spec"])
    assert "command" not in container, "command would replace the image's ENTRYPOINT"
    assert vars(parse_serve(image_argv(container["args"]))) == vars(parse_serve(image_argv(exec_form("CMD"))))
    assert container["image"].split(":")[0] == "edgeport-serve"
    (user,) = instruction("USER")
    pod_security = deployment()["spec"]["template"]["spec"]["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert str(pod_security["runAsUser"]) == user.split(":")[0]


def test_threads_match_the_cpu_limit():
    container = the_container(deployment()["spec"]["template"]["spec"])
    ns = parse_serve(image_argv(container["args"]))
    resources = container["resources"]
    assert cpus(resources["limits"]["cpu"]) == ns.threads, "--threads must equal the CPU limit"
    assert resources["requests"] == resources["limits"], "requests = limits: Guaranteed QoS, no CPU overcommit"
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    assert env.get("OMP_NUM_THREADS") == str(ns.threads)


def test_the_probes_name_routes_that_say_live_and_ready_correctly(model_folder, monkeypatch):
    """Readiness on /health (503 until the runner is loaded, then 200); liveness on a route that
    says 200 while the model is not loaded, so a loading or draining replica is not restarted."""
    container = the_container(deployment()["spec"]["template"]["spec"])
    _, app = run_cmd_serve(image_argv(container["args"]), model_folder, monkeypatch)
    # the GET routes are FastAPI's, behind the admission stage (which answers the inference routes itself)
    routes = {(route.path, method) for route in app.app.routes for method in getattr(route, "methods", ())}
    probes = {kind: container[kind]["httpGet"] for kind in PROBES}
    assert probes["readinessProbe"]["path"] == "/health"
    kserve = the_container(manifests(KSERVE_YAML)["InferenceService"]["spec"]["predictor"])
    for kind, get in [*probes.items(), *((k, kserve[k]["httpGet"]) for k in PROBES if k in kserve)]:
        assert (get["path"], "GET") in routes, f"{kind} {get['path']} is not a route of the served app"
    ready, live = probes["readinessProbe"]["path"], probes["livenessProbe"]["path"]
    assert probes["startupProbe"]["path"] == live

    async def probe_statuses():
        before = await asgi_get(app, ready), await asgi_get(app, live)
        async with lifespan(app):
            running = await asgi_get(app, ready), await asgi_get(app, live)
        after = await asgi_get(app, ready), await asgi_get(app, live)
        return before, running, after

    before, running, after = asyncio.run(probe_statuses())
    assert before == (503, 200), "before the runner is loaded: not ready, but live"
    assert running == (200, 200)
    assert after == (503, 200), "once shut down: not ready"


def test_the_grace_period_outlasts_the_prestop_sleep_and_the_drain(model_folder, monkeypatch):
    spec = deployment()["spec"]["template"]["spec"]
    container = the_container(spec)
    ns = parse_serve(image_argv(container["args"]))
    from edgeport.serving.app import ServeSettings

    assert ns.timeout_s == (float(container["args"][container["args"].index("--timeout-s") + 1])
                            if "--timeout-s" in container["args"] else ServeSettings.timeout_s)
    uvicorn_kwargs, _ = run_cmd_serve(image_argv(container["args"]), model_folder, monkeypatch)
    assert (uvicorn_kwargs["host"], uvicorn_kwargs["port"]) == (ns.host, ns.port)
    drain = uvicorn_kwargs["timeout_graceful_shutdown"]  # what edgeport really tells uvicorn
    assert drain >= ns.timeout_s, "a request may wait --timeout-s; the drain has to let it finish"
    sleep = prestop_seconds(container)
    assert sleep >= 1, "a preStop pause lets endpoints be removed before the socket closes"
    assert spec["terminationGracePeriodSeconds"] > sleep + drain, \
        f"grace {spec['terminationGracePeriodSeconds']} s <= preStop {sleep} s + drain {drain} s: SIGKILL mid-drain"


def test_manifest_fields_are_spelled_as_the_kubernetes_api_does():
    containers = [the_container(deployment()["spec"]["template"]["spec"]),
                  the_container(manifests(KSERVE_YAML)["InferenceService"]["spec"]["predictor"])]
    for container in containers:
        assert set(container) <= CONTAINER_FIELDS, set(container) - CONTAINER_FIELDS
        for kind in PROBES:
            if kind in container:
                assert set(container[kind]) <= PROBE_FIELDS, (kind, set(container[kind]) - PROBE_FIELDS)
                assert set(container[kind]["httpGet"]) <= HTTP_GET_FIELDS, kind


# -- KServe InferenceService ---------------------------------------------------------------------

def test_the_kserve_predictor_is_the_same_server_speaking_v2():
    isvc = manifests(KSERVE_YAML)["InferenceService"]
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    predictor = isvc["spec"]["predictor"]
    container = the_container(predictor)
    assert container["name"] == "kserve-container", "KServe finds a custom predictor's container by this name"
    dep = deployment()
    dep_container = the_container(dep["spec"]["template"]["spec"])
    assert container["args"] == dep_container["args"]
    assert container["image"] == dep_container["image"]
    assert "command" not in container
    assert container["resources"] == dep_container["resources"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["PROTOCOL"] == "v2", "how KServe's controller learns a custom predictor's protocol"
    assert env["OMP_NUM_THREADS"] == {e["name"]: e["value"] for e in dep_container["env"]}["OMP_NUM_THREADS"]
    ns = parse_serve(image_argv(container["args"]))
    assert [p["containerPort"] for p in container["ports"]] == [ns.port], "Knative allows exactly one port"
    for kind in ("readinessProbe", "livenessProbe"):
        assert container[kind]["httpGet"]["path"] == dep_container[kind]["httpGet"]["path"]
        assert port_number(container[kind]["httpGet"]["port"], container) == ns.port
    assert "lifecycle" not in container, "Knative (KServe's serverless mode) refuses lifecycle hooks"
    assert predictor["minReplicas"] == dep["spec"]["replicas"]
