"""The multi-machine files under cluster/ are checked by the tools that consume them.

- cluster/ray-cluster.yaml goes through Ray's own checks: the file as written
  against Ray's ray-schema.json, then what `ray up` runs before it touches
  AWS (``prepare_config`` + ``validate_config``).
- Every YAML file parses. The KubeRay and MLflow manifests have the expected
  kinds and wiring: GPU limits, the shared ReadWriteMany volume, the MLflow
  Service URL, secrets only through Secrets, and no dashboard or Service that is
  exposed without intent.
- Every ``masf-bench``, ``ray`` and ``mlflow`` command in the manifests and in
  cluster/README.md is parsed, never run, by the real click commands (masf-bench's
  typer app, Ray's CLI, MLflow's CLI). An unknown option or subcommand raises
  click.UsageError (typer's vendored click raises its own UsageError; both count).

Negative cases show that each check can fail.
"""

from __future__ import annotations

import configparser
import copy
import functools
import json
import os
import re
import shlex
from pathlib import Path
from typing import Any, Iterator

import click
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
README = CLUSTER / "README.md"
LAUNCHER = CLUSTER / "ray-cluster.yaml"
RAYCLUSTER = CLUSTER / "kuberay" / "raycluster.yaml"
RAYJOB = CLUSTER / "kuberay" / "rayjob.yaml"
NETPOL = CLUSTER / "kuberay" / "networkpolicy.yaml"
SHARED = CLUSTER / "kuberay" / "shared-storage.yaml"
MLFLOW_K8S = CLUSTER / "mlflow" / "kubernetes.yaml"
COMPOSE = CLUSTER / "mlflow" / "docker-compose.yaml"
ENV_EXAMPLE = CLUSTER / "mlflow" / "mlflow.env.example"
AUTH_INI = CLUSTER / "mlflow" / "basic_auth.ini"

KNOWN_TOOLS = ("masf-bench", "ray", "mlflow")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN", re.I)
EXPOSED_SERVICE_TYPES = {"LoadBalancer", "NodePort"}
EXPOSURE_ANNOTATION = "masf-bench/dashboard-exposure"


def _cli_exceptions() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """Usage errors and help exits of click and of the click that typer >= 0.2x vendors (typer._click)."""
    usage, exits = [click.UsageError], [click.exceptions.Exit]
    try:
        from typer._click.exceptions import UsageError as TyperUsageError

        usage.append(TyperUsageError)
    except ImportError:
        pass
    try:
        from typer.exceptions import Exit as TyperExit

        exits.append(TyperExit)
    except ImportError:
        pass
    return tuple(usage), tuple(exits)


USAGE_ERRORS, HELP_EXITS = _cli_exceptions()


# ---------------------------------------------------------------- loading


def yaml_files() -> list[Path]:
    return sorted(p for p in CLUSTER.rglob("*") if p.suffix in (".yaml", ".yml"))


def docs(path: Path) -> list[Any]:
    with path.open() as fh:
        return [d for d in yaml.safe_load_all(fh) if d is not None]


def one(path: Path, kind: str) -> dict:
    found = [d for d in docs(path) if isinstance(d, dict) and d.get("kind") == kind]
    assert len(found) == 1, f"{path.name}: expected one {kind}, found {len(found)}"
    return found[0]


def k8s_objects() -> list[tuple[Path, dict]]:
    out = []
    for path in [*sorted((CLUSTER / "kuberay").glob("*.yaml")), MLFLOW_K8S]:
        out.extend((path, d) for d in docs(path))
    return out


def pod_specs(obj: dict) -> Iterator[tuple[str, dict, dict]]:
    """(where, pod template metadata, pod spec) of every pod an object defines."""
    kind, spec = obj.get("kind"), obj.get("spec", {})
    if kind == "Pod":
        yield obj["metadata"]["name"], obj.get("metadata", {}), spec
    elif kind in ("Deployment", "StatefulSet", "Job"):
        yield obj["metadata"]["name"], spec["template"].get("metadata", {}), spec["template"]["spec"]
    elif kind in ("RayCluster", "RayJob"):
        cluster = spec if kind == "RayCluster" else spec["rayClusterSpec"]
        head = cluster["headGroupSpec"]["template"]
        yield f"{obj['metadata']['name']}/head", head.get("metadata", {}), head["spec"]
        for group in cluster.get("workerGroupSpecs", []):
            tpl = group["template"]
            yield f"{obj['metadata']['name']}/{group['groupName']}", tpl.get("metadata", {}), tpl["spec"]


def ray_cluster_spec(obj: dict) -> dict:
    return obj["spec"] if obj["kind"] == "RayCluster" else obj["spec"]["rayClusterSpec"]


def gpu_groups(cluster: dict) -> list[dict]:
    return [g for g in cluster["workerGroupSpecs"]
            if any("nvidia.com/gpu" in c.get("resources", {}).get("limits", {}) for c in g["template"]["spec"]["containers"])]


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def mlflow_service_url() -> str:
    """The in-cluster URL of the MLflow Service defined in cluster/mlflow/kubernetes.yaml."""
    svc = next(d for d in docs(MLFLOW_K8S) if d["kind"] == "Service" and d["metadata"]["name"] == "mlflow")
    port = svc["spec"]["ports"][0]["port"]
    return f"http://{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc.cluster.local:{port}"


def pyproject_pins() -> dict[str, str]:
    """Exact pins (``"name==version"``) of pyproject.toml's dependencies."""
    return dict(re.findall(r'"([A-Za-z0-9_.-]+)==([^"\s;]+)"', (ROOT / "pyproject.toml").read_text()))


# ---------------------------------------------------------------- the real CLIs, parse only


@functools.lru_cache(maxsize=None)
def tool_command(tool: str) -> click.Command:
    if tool == "masf-bench":
        import typer

        from masf.cli.main import app

        return typer.main.get_command(app)
    if tool == "ray":
        from ray.scripts.scripts import cli

        return cli
    if tool == "mlflow":
        from mlflow.cli import cli

        return cli
    raise KeyError(tool)


def parse_cli(argv: list[str]) -> click.Context:
    """Parse ``argv`` (tool name first) with the tool's click command without invoking it; the leaf context.

    Subcommands are resolved as the shell would (group options are not used in these files), e.g.
    ``masf-bench data check ROOT`` or ``ray job submit ... -- ENTRYPOINT``. Raises a usage error
    (``USAGE_ERRORS``: click.UsageError, or the same class of the click that typer vendors) on an
    unknown subcommand or option, a missing argument or a bad value.
    """
    name, args = argv[0], list(argv[1:])
    cmd, parent = tool_command(name), None
    while callable(getattr(cmd, "get_command", None)) and callable(getattr(cmd, "list_commands", None)):
        ctx = cmd.make_context(name, list(args), parent=parent)
        if not args:
            raise click.UsageError(f"{name}: no subcommand", ctx=ctx)
        sub = cmd.get_command(ctx, args[0])
        if sub is None:
            raise click.UsageError(f"{name}: no such command '{args[0]}'", ctx=ctx)
        name, args, cmd, parent = args[0], args[1:], sub, ctx
    try:
        return cmd.make_context(name, list(args), parent=parent)
    except HELP_EXITS as done:  # --help: valid; the help was printed
        if getattr(done, "exit_code", 0):
            raise
        return parent


OPERATORS = {";", "&&", "||", "|", "&", "(", ")", ";;", "|&"}
REDIRECTS = {">", ">>", "<", ">&", "<<", "<<<", "&>"}
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
PREFIXES = {"exec", "nohup", "time", "sudo", "then", "do", "else"}


def shell_commands(line: str) -> list[list[str]]:
    """The argv of every masf-bench / ray / mlflow command in one shell line.

    Splits at ; && || | & and parentheses, drops redirections and leading VAR=value
    assignments, follows ``--`` (``ray job submit -- CMD``, ``kubectl exec POD -- CMD``)
    and the quoted command of ``ray exec CONFIG "..."`` and ``bash -c "..."``.
    """
    lex = shlex.shlex(line, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    lex.commenters = "#"
    tokens = list(lex)
    segments, current, skip = [], [], False
    for tok in tokens:
        if skip:
            skip = False
        elif tok in OPERATORS:
            segments.append(current)
            current = []
        elif tok in REDIRECTS:
            skip = True
        else:
            current.append(tok)
    segments.append(current)

    found: list[list[str]] = []

    def visit(seg: list[str]) -> None:
        i = 0
        while i < len(seg) and (ASSIGNMENT.match(seg[i]) or seg[i] in PREFIXES):
            i += 1
        seg = seg[i:]
        if not seg:
            return
        if seg[0] in KNOWN_TOOLS:
            found.append(seg)
        if "--" in seg:
            rest = seg[seg.index("--") + 1 :]
            if seg[0] not in KNOWN_TOOLS or (rest and rest[0] in KNOWN_TOOLS):
                visit(rest)
        if seg[:2] == ["ray", "exec"] or (seg[0] in ("bash", "sh") and "-c" in seg):
            for tok in seg[1:]:
                if any(tok.strip().startswith(t + " ") for t in KNOWN_TOOLS):
                    found.extend(shell_commands(tok))

    for seg in segments:
        visit(seg)
    return found


def readme_commands() -> list[tuple[str, list[str]]]:
    """(README line, argv) of the known tools' commands in cluster/README.md.

    Fenced ```bash blocks (backslash continuations joined) are read line by line. Inline code spans
    are checked when they are a whole command (4+ words), not a mention such as `ray up`.
    """
    out: list[tuple[str, list[str]]] = []
    lang, buffer, start = None, "", 0  # lang: None outside a fenced block
    for n, raw in enumerate(README.read_text().splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("```"):
            lang = stripped[3:].strip() if lang is None else None
            continue
        if lang is None:
            for span in re.findall(r"`([^`]+)`", raw):
                words = span.split()
                if len(words) >= 4 and words[0] in KNOWN_TOOLS:
                    out.extend((f"README.md:{n} (inline)", argv) for argv in shell_commands(span))
        elif lang in ("bash", "sh", "shell"):
            if not buffer:
                start = n
            if raw.rstrip().endswith("\\"):
                buffer += raw.rstrip()[:-1] + " "
                continue
            buffer += raw
            out.extend((f"README.md:{start}", argv) for argv in shell_commands(buffer))
            buffer = ""
    return out


def _fenced_languages() -> list[str]:
    return [m.group(1) for m in re.finditer(r"^```(\w*)\s*$", README.read_text(), re.M)]


# ---------------------------------------------------------------- all YAML


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(CLUSTER)))
def test_every_yaml_parses(path: Path) -> None:
    found = docs(path)
    assert found, f"{path} holds no document"
    for d in found:
        assert isinstance(d, dict), f"{path}: a document that is not a mapping"


def test_the_expected_files_exist() -> None:
    for path in (README, LAUNCHER, RAYCLUSTER, RAYJOB, NETPOL, SHARED, MLFLOW_K8S, COMPOSE, ENV_EXAMPLE, AUTH_INI,
                 CLUSTER / "kuberay" / "Dockerfile", CLUSTER / "mlflow" / "Dockerfile"):
        assert path.is_file(), f"missing {path.relative_to(ROOT)}"


def test_kubernetes_objects_have_api_version_kind_and_namespace() -> None:
    for path, obj in k8s_objects():
        assert obj.get("apiVersion") and obj.get("kind"), f"{path.name}: object without apiVersion/kind"
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == "masf", f"{path.name}: {obj['kind']} {obj['metadata']['name']} outside namespace masf"


# ---------------------------------------------------------------- Ray cluster launcher


def ray_schema() -> dict:
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def validate_launcher(config: dict) -> dict:
    """Ray's checks of a cluster launcher config: the file against ray-schema.json, then `ray up`'s own path."""
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    jsonschema.validate(config, ray_schema())
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def launcher() -> dict:
    return yaml.safe_load(LAUNCHER.read_text())


def test_launcher_config_passes_rays_validation() -> None:
    from ray.autoscaler._private.providers import _NODE_PROVIDERS

    config = launcher()
    prepared = validate_launcher(config)
    assert config["provider"]["type"] in _NODE_PROVIDERS
    assert config["provider"]["type"] == "aws"
    head = prepared["head_node_type"]
    workers = [k for k in prepared["available_node_types"] if k != head]
    gpu = [k for k in workers if prepared["available_node_types"][k]["resources"].get("GPU", 0) >= 1]
    assert gpu, "no GPU worker type"
    for name in gpu:
        node = prepared["available_node_types"][name]
        assert node["min_workers"] >= 1, "masf-bench checks for a GPU before planning: keep one GPU worker up"
        assert node["max_workers"] >= node["min_workers"]


@pytest.mark.parametrize(
    "breakage",
    ["misspelled top-level key", "missing provider", "misspelled node type key", "min_workers above max_workers"],
)
def test_rays_validation_rejects_a_broken_launcher_config(breakage: str) -> None:
    import jsonschema

    config = launcher()
    if breakage == "misspelled top-level key":
        config["setup_comands"] = config.pop("setup_commands")
    elif breakage == "missing provider":
        del config["provider"]
    elif breakage == "misspelled node type key":
        node = config["available_node_types"]["ray.worker.gpu"]
        node["min_worker"] = node.pop("min_workers")
    elif breakage == "min_workers above max_workers":
        config["max_workers"] = 0
    with pytest.raises((jsonschema.ValidationError, ValueError)):
        validate_launcher(config)


def launcher_commands() -> list[list[str]]:
    config = launcher()
    keys = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
            "head_start_ray_commands", "worker_start_ray_commands")
    return [argv for key in keys for line in config.get(key, []) for argv in shell_commands(line)]


def test_launcher_ray_start_commands_parse_and_keep_the_dashboard_local() -> None:
    config = launcher()
    head = [parse_cli(a) for line in config["head_start_ray_commands"] for a in shell_commands(line) if a[:2] == ["ray", "start"]]
    workers = [parse_cli(a) for line in config["worker_start_ray_commands"] for a in shell_commands(line) if a[:2] == ["ray", "start"]]
    assert len(head) == 1 and len(workers) == 1
    assert head[0].params["head"] is True
    assert head[0].params["dashboard_host"] == "127.0.0.1", "the dashboard must stay on the head's loopback (ray dashboard tunnels to it)"
    assert workers[0].params["address"].endswith(":6379") and "$RAY_HEAD_IP" in workers[0].params["address"]
    for line in [*config["head_start_ray_commands"], *config["worker_start_ray_commands"]]:
        if "ray start" in line:
            assert "RAY_AUTH_MODE=token" in line, "every node joins with Ray token authentication"


def test_every_launcher_command_of_a_known_tool_parses() -> None:
    found = launcher_commands()
    assert any(a[:2] == ["ray", "start"] for a in found)
    for argv in found:
        parse_cli(argv)


def test_launcher_shares_storage_and_pins_what_pyproject_pins() -> None:
    config = launcher()
    assert any("/mnt/shared:/mnt/shared" in opt for opt in config["docker"]["run_options"])
    assert any("mount -t nfs4" in c and "/mnt/shared" in c for c in config["initialization_commands"])
    setup = " ".join(config["setup_commands"])
    assert "masf-bench[gpu]" in setup
    for pkg in ("torch", "torchvision"):
        assert f'"{pkg}=={pyproject_pins()[pkg]}"' in setup, f"{pkg} is not pinned as in pyproject.toml"
    assert "~/.ray/auth_token" in config["file_mounts"]


def test_launcher_opens_no_ray_port_to_the_internet() -> None:
    extra = launcher()["provider"].get("security_group", {}).get("IpPermissions", [])
    for rule in extra:
        public = any(r.get("CidrIp") == "0.0.0.0/0" for r in rule.get("IpRanges", []))
        ports = range(rule.get("FromPort", 0), rule.get("ToPort", 65535) + 1)
        assert not (public and any(p in ports for p in (6379, 8265, 10001))), "a Ray port open to 0.0.0.0/0"


# ---------------------------------------------------------------- KubeRay


def test_kuberay_kinds_and_api_versions() -> None:
    rc, rj = one(RAYCLUSTER, "RayCluster"), one(RAYJOB, "RayJob")
    assert rc["apiVersion"] == "ray.io/v1" and rj["apiVersion"] == "ray.io/v1"
    assert rj["spec"]["shutdownAfterJobFinishes"] is True
    assert isinstance(rj["spec"]["entrypoint"], str)


@pytest.mark.parametrize("path,kind", [(RAYCLUSTER, "RayCluster"), (RAYJOB, "RayJob")], ids=["RayCluster", "RayJob"])
def test_gpu_worker_group_requests_one_gpu(path: Path, kind: str) -> None:
    cluster = ray_cluster_spec(one(path, kind))
    groups = gpu_groups(cluster)
    assert groups, "no worker group with nvidia.com/gpu limits"
    for group in groups:
        assert group["minReplicas"] >= 1, "masf-bench checks for a GPU before planning: keep one GPU worker up"
        assert group["maxReplicas"] >= group["minReplicas"]
        for c in group["template"]["spec"]["containers"]:
            limits, requests = c["resources"]["limits"], c["resources"].get("requests", {})
            assert int(limits["nvidia.com/gpu"]) == 1
            if "nvidia.com/gpu" in requests:
                assert int(requests["nvidia.com/gpu"]) == int(limits["nvidia.com/gpu"])
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"]
    assert all("nvidia.com/gpu" not in c.get("resources", {}).get("limits", {}) for c in head), "the head needs no GPU"


def network_policies_for(labels: dict[str, str], policies: list[dict]) -> list[dict]:
    out = []
    for d in policies:
        sel = d["spec"]["podSelector"].get("matchLabels", {})
        if d["kind"] == "NetworkPolicy" and sel and all(labels.get(k) == v for k, v in sel.items()):
            out.append(d)
    return out


def dashboard_exposure_problems(obj: dict, policies: list[dict] | None = None) -> list[str]:
    """Why a RayCluster/RayJob head would expose its dashboard or Ray ports without intent ([] if it does not).

    Loopback (127.0.0.1) is the default. The pod network (KubeRay's own default, 0.0.0.0) passes only
    with the exposure annotation and a NetworkPolicy that selects the head pods and admits
    neither every source nor the internet. The head Service is never LoadBalancer or NodePort.
    """
    policies = docs(NETPOL) if policies is None else policies
    cluster = ray_cluster_spec(obj)
    head = cluster["headGroupSpec"]
    problems = []
    if head.get("serviceType", "ClusterIP") in EXPOSED_SERVICE_TYPES:
        problems.append(f"head Service type {head['serviceType']}")
    host = head.get("rayStartParams", {}).get("dashboard-host")
    if host in ("127.0.0.1", "localhost"):
        return problems
    if EXPOSURE_ANNOTATION not in obj["metadata"].get("annotations", {}):
        problems.append(f"dashboard-host {host!r} without the {EXPOSURE_ANNOTATION} annotation")
    labels = head["template"].get("metadata", {}).get("labels", {})
    selected = network_policies_for(labels, policies)
    if not selected:
        problems.append("dashboard on the pod network but no NetworkPolicy selects the head pods")
    for pol in selected:
        for rule in pol["spec"].get("ingress", []):
            if not rule.get("from"):
                problems.append(f"NetworkPolicy {pol['metadata']['name']} admits every source")
            for src in rule.get("from", []):
                if src.get("ipBlock", {}).get("cidr") in ("0.0.0.0/0", "::/0"):
                    problems.append(f"NetworkPolicy {pol['metadata']['name']} admits the internet")
    return problems


@pytest.mark.parametrize("path,kind", [(RAYCLUSTER, "RayCluster"), (RAYJOB, "RayJob")], ids=["RayCluster", "RayJob"])
def test_head_dashboard_is_not_exposed_without_intent(path: Path, kind: str) -> None:
    assert dashboard_exposure_problems(one(path, kind)) == []


def test_the_interactive_raycluster_keeps_the_dashboard_on_loopback() -> None:
    params = one(RAYCLUSTER, "RayCluster")["spec"]["headGroupSpec"]["rayStartParams"]
    assert params["dashboard-host"] == "127.0.0.1"


@pytest.mark.parametrize("breakage", ["0.0.0.0 without annotation", "LoadBalancer", "allow-all policy", "no policy"])
def test_the_exposure_check_catches_an_exposed_dashboard(breakage: str) -> None:
    obj, policies = copy.deepcopy(one(RAYCLUSTER, "RayCluster")), docs(NETPOL)
    head = obj["spec"]["headGroupSpec"]
    if breakage == "0.0.0.0 without annotation":
        head["rayStartParams"]["dashboard-host"] = "0.0.0.0"
    elif breakage == "LoadBalancer":
        head["serviceType"] = "LoadBalancer"
    elif breakage == "allow-all policy":
        obj = copy.deepcopy(one(RAYJOB, "RayJob"))
        for pol in policies:
            pol["spec"]["ingress"] = [{}]
    else:
        obj, policies = copy.deepcopy(one(RAYJOB, "RayJob")), []
    assert dashboard_exposure_problems(obj, policies)


def test_rayjob_runs_on_the_same_cluster_spec_as_the_raycluster() -> None:
    rc = copy.deepcopy(one(RAYCLUSTER, "RayCluster")["spec"])
    rj = copy.deepcopy(one(RAYJOB, "RayJob")["spec"]["rayClusterSpec"])
    for spec in (rc, rj):
        spec["headGroupSpec"]["rayStartParams"].pop("dashboard-host")
    assert rj == rc, "rayjob.yaml's rayClusterSpec differs from raycluster.yaml beyond dashboard-host"


def test_every_ray_pod_mounts_the_shared_rwx_volume() -> None:
    pvc = one(SHARED, "PersistentVolumeClaim")
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]
    for path, kind in ((RAYCLUSTER, "RayCluster"), (RAYJOB, "RayJob")):
        for where, _, spec in pod_specs(one(path, kind)):
            claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v}
            for c in spec["containers"]:
                mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
                assert claims.get(mounts.get("/mnt/shared")) == pvc["metadata"]["name"], f"{where}: /mnt/shared is not {pvc['metadata']['name']}"


def test_the_head_talks_to_the_in_cluster_mlflow_service_and_workers_get_no_mlflow_login() -> None:
    url = mlflow_service_url()
    for path, kind in ((RAYCLUSTER, "RayCluster"), (RAYJOB, "RayJob")):
        cluster = ray_cluster_spec(one(path, kind))
        (head,) = cluster["headGroupSpec"]["template"]["spec"]["containers"]
        env = env_of(head)
        assert env["MLFLOW_TRACKING_URI"]["value"] == url
        for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            assert "secretKeyRef" in env[name]["valueFrom"]
        for group in cluster["workerGroupSpecs"]:
            for c in group["template"]["spec"]["containers"]:
                assert "MLFLOW_TRACKING_PASSWORD" not in env_of(c), "trials never talk to MLflow: no login on workers"


def test_ray_versions_agree_everywhere() -> None:
    versions = {one(RAYCLUSTER, "RayCluster")["spec"]["rayVersion"], one(RAYJOB, "RayJob")["spec"]["rayClusterSpec"]["rayVersion"]}
    texts = [LAUNCHER.read_text(), (CLUSTER / "kuberay" / "Dockerfile").read_text()]
    for text in texts:
        versions |= set(re.findall(r"rayproject/ray:(\d+\.\d+\.\d+)", text))
        versions |= set(re.findall(r"ray\[[a-z,]+\]==(\d+\.\d+\.\d+)", text))
    assert len(versions) == 1, f"Ray versions disagree across cluster/: {sorted(versions)}"


def test_the_image_pins_torch_as_pyproject_does() -> None:
    text = (CLUSTER / "kuberay" / "Dockerfile").read_text()
    for pkg in ("torch", "torchvision"):
        assert f'"{pkg}=={pyproject_pins()[pkg]}"' in text
    assert "[gpu]" in text


# ---------------------------------------------------------------- the RayJob entrypoint, parsed by masf-bench


def entrypoint_argv(entrypoint: str) -> list[str]:
    found = shell_commands(entrypoint)
    assert len(found) == 1 and found[0][0] == "masf-bench", f"expected one masf-bench command in {entrypoint!r}"
    return found[0]


def test_rayjob_entrypoint_parses_with_the_real_cli() -> None:
    rj = one(RAYJOB, "RayJob")
    argv = entrypoint_argv(rj["spec"]["entrypoint"])
    ctx = parse_cli(argv)
    assert ctx.info_name == "run"
    p = ctx.params
    assert p["address"] == "auto"
    assert p["tracking_uri"] == mlflow_service_url()
    assert str(p["storage"]).startswith("/mnt/shared/") and all(str(r).startswith("/mnt/shared/") for r in p["data_root"])
    assert p["resume"] is True, "a re-applied RayJob must continue the sweep, not refuse it"
    (group,) = gpu_groups(rj["spec"]["rayClusterSpec"])
    (worker,) = group["template"]["spec"]["containers"]
    assert p["gpus_per_trial"] == int(worker["resources"]["limits"]["nvidia.com/gpu"])
    assert p["cpus_per_trial"] <= float(worker["resources"]["limits"]["cpu"])


@pytest.mark.parametrize(
    "entrypoint",
    [
        "masf-bench run --all-categories --address auto --tracking-url http://mlflow:5000",  # misspelled option
        "masf-bench run --all-categories --gpu-per-trial 1",  # misspelled option
        "masf-bench runn --all-categories",  # misspelled subcommand
        "masf-bench run --categories bottle --max-failures many",  # not an integer
        "ray job submit --address http://127.0.0.1:8265 -- masf-bench run --storge /mnt/shared/masf-runs",
    ],
)
def test_a_broken_entrypoint_is_rejected(entrypoint: str) -> None:
    commands = shell_commands(entrypoint)
    assert commands
    with pytest.raises(USAGE_ERRORS):
        for argv in commands:
            parse_cli(argv)


def test_a_misspelled_ray_start_option_is_rejected() -> None:
    with pytest.raises(USAGE_ERRORS):
        parse_cli(shell_commands("ulimit -n 65536; ray start --head --dashbord-host=127.0.0.1")[0])


# ---------------------------------------------------------------- MLflow server


def mlflow_server_params(argv: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict:
    for key in [k for k in os.environ if k.startswith("MLFLOW_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    ctx = parse_cli(argv)
    assert ctx.info_name == "server"
    return ctx.params


def check_server(params: dict) -> None:
    assert str(params["backend_store_uri"]).startswith("postgresql://"), "the backend store is PostgreSQL"
    assert params["serve_artifacts"] is True
    assert str(params["artifacts_destination"]).startswith("s3://")
    assert params["app_name"] == "basic-auth", "the shared server runs MLflow's authentication"
    assert params["port"] == 5000


def test_kubernetes_mlflow_server_command_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    dep = next(d for d in docs(MLFLOW_K8S) if d["kind"] == "Deployment" and d["metadata"]["name"] == "mlflow")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in c["env"] if "value" in e}
    params = mlflow_server_params([*c["command"], *c["args"]], env, monkeypatch)
    check_server(params)
    host = mlflow_service_url().removeprefix("http://")
    assert host in params["allowed_hosts"].split(","), "in-cluster clients' Host header must be allowed"
    svc = next(d for d in docs(MLFLOW_K8S) if d["kind"] == "Service" and d["metadata"]["name"] == "mlflow")
    assert svc["spec"].get("type", "ClusterIP") == "ClusterIP"


def test_compose_mlflow_server_command_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    svc = yaml.safe_load(COMPOSE.read_text())["services"]["mlflow"]
    params = mlflow_server_params(list(svc["command"]), {k: str(v) for k, v in svc["environment"].items()}, monkeypatch)
    check_server(params)


def test_a_misspelled_mlflow_option_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(USAGE_ERRORS):
        mlflow_server_params(["mlflow", "server", "--serve-artifact", "--port", "5000"], {}, monkeypatch)


def test_compose_publishes_only_mlflow_and_on_loopback_by_default() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    published = {name: s["ports"] for name, s in services.items() if s.get("ports")}
    assert list(published) == ["mlflow"], "only the MLflow server is published"
    for spec in published["mlflow"]:
        host = str(spec).rsplit(":", 2)[0]
        default = re.fullmatch(r"\$\{\w+:-([^}]*)\}", host)
        assert (default.group(1) if default else host) == "127.0.0.1", f"{spec}: publish on 127.0.0.1 unless told otherwise"


def test_compose_secrets_come_from_the_env_file() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for name, svc in services.items():
        for key, value in (svc.get("environment") or {}).items():
            if SECRET_NAME.search(key):
                assert re.fullmatch(r"\$\{\w+:\?[^}]*\}", str(value)), f"{name}.{key}: a secret must be a required ${{VAR:?...}}"
            if str(value).startswith("postgresql://"):
                assert "${POSTGRES_PASSWORD:?" in str(value)


def test_kubernetes_secrets_come_from_secrets_only() -> None:
    for path, obj in k8s_objects():
        assert obj["kind"] != "Secret", f"{path.name}: a Secret with data in the repository"
        for where, _, spec in pod_specs(obj):
            for c in spec.get("containers", []):
                for name, e in env_of(c).items():
                    if SECRET_NAME.search(name):
                        assert "secretKeyRef" in e.get("valueFrom", {}), f"{path.name} {where}: {name} must come from a Secret"


def test_env_template_holds_placeholders_only() -> None:
    values = dict(line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if line.strip() and not line.startswith("#"))
    secrets = {k: v for k, v in values.items() if SECRET_NAME.search(k)}
    assert secrets
    for key, value in secrets.items():
        assert value.startswith("CHANGE_ME"), f"{key}: the template must not hold a real secret"
    k8s_keys = {e["valueFrom"]["secretKeyRef"]["key"] for _, obj in k8s_objects() for _, _, spec in pod_specs(obj)
                for c in spec.get("containers", []) for e in c.get("env", [])
                if e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "mlflow-secrets"}
    assert k8s_keys <= set(values), f"mlflow-secrets keys missing from the template: {sorted(k8s_keys - set(values))}"


def test_auth_config_is_the_same_file_in_compose_and_kubernetes_and_holds_no_password() -> None:
    cm = next(d for d in docs(MLFLOW_K8S) if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "mlflow-auth-config")
    assert cm["data"]["basic_auth.ini"].strip() == AUTH_INI.read_text().strip()
    ini = configparser.ConfigParser()
    ini.read_string(AUTH_INI.read_text())
    assert not ini["mlflow"].get("admin_password"), "the admin password comes from MLFLOW_AUTH_ADMIN_PASSWORD"
    assert ini["mlflow"]["default_permission"] in ("READ", "NO_PERMISSIONS")


# ---------------------------------------------------------------- README


def test_readme_code_blocks_are_shell_or_declared() -> None:
    langs = _fenced_languages()
    opening = langs[0::2]
    assert all(opening), "every fenced block names its language (bash blocks are parsed by the tests)"


README_COMMANDS = readme_commands()


def test_readme_walks_through_every_step() -> None:
    seen = {" ".join(argv[:2]) for _, argv in README_COMMANDS}
    for step in ("ray start", "ray up", "ray dashboard", "ray down", "ray job", "ray rsync-up", "ray exec",
                 "mlflow server", "masf-bench run", "masf-bench leaderboard"):
        assert step in seen, f"README.md shows no `{step}`"
    text = README.read_text()
    for phrase in ("kubectl apply -f cluster/kuberay/rayjob.yaml", "helm install kuberay-operator", "--resume",
                   "--app-name basic-auth", "MLFLOW_TRACKING_USERNAME", "--dashboard-host 127.0.0.1", "oauth2-proxy"):
        assert phrase in text, f"README.md does not mention {phrase}"


@pytest.mark.parametrize("where,argv", README_COMMANDS, ids=[f"{w} {' '.join(a[:3])}" for w, a in README_COMMANDS])
def test_readme_command_parses_with_the_real_cli(where: str, argv: list[str]) -> None:
    parse_cli(argv)


def test_readme_local_sweep_targets_the_local_cluster_and_server() -> None:
    runs = [parse_cli(a).params for _, a in README_COMMANDS if a[:2] == ["masf-bench", "run"]]
    local = [p for p in runs if p["address"] == "127.0.0.1:6379"]
    assert local and local[0]["tracking_uri"] == "http://127.0.0.1:5000" and local[0]["preset"] == "smoke"
    starts = [parse_cli(a).params for _, a in README_COMMANDS if a[:2] == ["ray", "start"]]
    assert any(s["head"] and s["port"] == 6379 and s["dashboard_host"] == "127.0.0.1" for s in starts)
    assert any(s["address"] == "127.0.0.1:6379" for s in starts)
    servers = [parse_cli(a).params for _, a in README_COMMANDS if a[:2] == ["mlflow", "server"]]
    assert servers and all(s["host"] in (None, "127.0.0.1") for s in servers), "README's own servers bind to 127.0.0.1"


def test_readme_explains_every_placeholder() -> None:
    text = README.read_text()
    used = set()
    for path in CLUSTER.rglob("*"):
        if path.is_file() and path != README:
            used |= set(re.findall(r"REPLACE_ME_[A-Z_]+[A-Z]", path.read_text(errors="replace")))
    assert used, "no placeholders found"
    missing = sorted(p for p in used if p not in text)
    assert not missing, f"README.md does not explain {missing}"


def test_the_readme_parser_finds_a_bad_command() -> None:
    """The README checks can fail: a misspelled option in a bash block is found and rejected."""
    found = shell_commands('ray exec cluster/ray-cluster.yaml "masf-bench data check /mnt/shared/mvtec_ad --shallo"')
    assert [a[:3] for a in found] == [["ray", "exec", "cluster/ray-cluster.yaml"], ["masf-bench", "data", "check"]]
    parse_cli(found[0])
    with pytest.raises(USAGE_ERRORS):
        parse_cli(found[1])
