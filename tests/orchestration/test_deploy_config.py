"""The cluster deployment files (deploy/k8s/, docs/scale-out.md), validated with Dagster's and dagster-k8s's own code.

No cluster is involved: nothing here is applied to Kubernetes or rendered by helm. Each file is checked by the
code that reads it in a deployment:

- deploy/k8s/dagster-instance.yaml: the whole file as DagsterInstance reads dagster.yaml; its run_launcher config
  against ``K8sRunLauncher.config_type()``; its volumes and raw Kubernetes config against the Kubernetes models
  dagster-k8s builds pods from.
- deploy/k8s/values.yaml: ``runLauncher.config.k8sRunLauncher`` rendered into the launcher's config the way the
  chart's template (helm/dagster/templates/helpers/instance/_run-launcher.tpl) does, then validated like the
  instance file; the code location's module, environment and volumes.
- deploy/k8s/gpu-run-tags.yaml: the ``dagster-k8s/config`` tag through dagster-k8s's tag parser, the
  k8s_job_executor's run config against its config schema, the compute resource's run config against the
  train_and_evaluate job, and the pool limits against the pools the code location's assets use.

Every validator is also shown to reject a misspelled key (``test_a_typo_fails``), so none passes vacuously.
Storage and compute-log settings are validated only as far as Dagster core knows them: dagster-postgres and
dagster-aws are deployment dependencies, not installed here.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest
import yaml

# The one private Dagster import. It is the function DagsterInstance runs on dagster.yaml (the instance schema,
# the storage and concurrency rules); Dagster has no public validator for an instance file
# (dg.validate_run_config is for a job's run config, used below for everything else).
from dagster._core.instance.config import dagster_instance_config  # noqa: TID251
from dagster_k8s import DagsterK8sJobConfig, K8sRunLauncher, k8s_job_executor
from dagster_k8s.job import USER_DEFINED_K8S_CONFIG_KEY, UserDefinedDagsterK8sConfig, get_user_defined_k8s_config

from assets.common import DUCKDB_POOL, GPU_POOL

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy" / "k8s"
INSTANCE_FILE = DEPLOY / "dagster-instance.yaml"
VALUES_FILE = DEPLOY / "values.yaml"
GPU_FILE = DEPLOY / "gpu-run-tags.yaml"

# What the chart is installed as (deploy/k8s/values.yaml, first lines): names derived from it must match the
# instance file's (the chart names the instance ConfigMap "<fullname>-instance").
RELEASE, NAMESPACE = "dagster", "dagster"
# Environment the instance file reads ({env: ...}); a deployment sets it in the webserver and daemon pods.
DEPLOYMENT_ENV = {"DAGSTER_PG_PASSWORD": "secret", "RECDAG_IMAGE": "registry.example.com/recdag:test"}


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.fixture
def deployment_env(monkeypatch):
    for name, value in DEPLOYMENT_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="module")
def code_location():
    from orchestration.definitions import defs  # ~10 s: imports every asset module

    return defs


# --- validators (each raises on an invalid document) -----------------------------------------------------


def validate_instance(doc: dict, tmp_path: Path) -> dict:
    """The whole dagster.yaml as DagsterInstance reads it (schema, storage and concurrency rules)."""
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(doc))
    config, _ = dagster_instance_config(str(tmp_path))
    return config


def process_config(schema, value: dict) -> dict:
    """``value`` processed against ``schema`` by Dagster's config system (defaults filled, {env: ...} resolved),
    through the public API: the schema becomes an op's config schema and dg.validate_run_config processes it."""

    @dg.op(name="config_under_test", config_schema=schema)
    def config_under_test(): ...

    @dg.job(name="config_probe")
    def config_probe():
        config_under_test()

    return dg.validate_run_config(config_probe, {"ops": {"config_under_test": {"config": value}}})["ops"]["config_under_test"]["config"]


def validate_run_launcher(config: dict) -> dict:
    """K8sRunLauncher's config: its config type, then the Kubernetes models its volumes and raw config become
    (dagster-k8s builds them when it launches a run; an unknown key raises there)."""
    processed = process_config(K8sRunLauncher.config_type(), config)
    DagsterK8sJobConfig(volume_mounts=processed.get("volume_mounts"), volumes=processed.get("volumes"))
    UserDefinedDagsterK8sConfig.from_dict(processed.get("run_k8s_config") or {})
    return processed


def validate_k8s_tag(value: dict) -> UserDefinedDagsterK8sConfig:
    """A ``dagster-k8s/config`` run or op tag, parsed as dagster-k8s parses it on a run or step: its schema (the
    top-level keys), then each section against its Kubernetes model (V1Container, V1PodSpec, ...)."""
    return get_user_defined_k8s_config({USER_DEFINED_K8S_CONFIG_KEY: json.dumps(value)})


@dg.op
def _step(): ...


@dg.job(executor_def=k8s_job_executor)
def k8s_executor_probe():
    _step()


def validate_executor_run_config(run_config: dict) -> dict:
    """k8s_job_executor's run config (``execution: config:``) against its config schema; every step's raw
    Kubernetes config also through the tag parser's models."""
    processed = dg.validate_run_config(k8s_executor_probe, run_config)["execution"][k8s_job_executor.name]
    for step_config in [processed.get("step_k8s_config") or {}, *processed.get("per_step_k8s_config", {}).values()]:
        validate_k8s_tag(step_config)
    return processed


# The keys of the chart's runLauncher.config.k8sRunLauncher (schema K8sRunLauncherConfig, extra keys forbidden) and
# runK8sConfig (RunK8sConfig), from helm/dagster/schema/schema/charts/dagster/subschema/run_launcher.py.
CHART_K8S_RUN_LAUNCHER_KEYS = {
    "image",
    "imagePullPolicy",
    "jobNamespace",
    "loadInclusterConfig",
    "kubeconfigFile",
    "envConfigMaps",
    "envSecrets",
    "envVars",
    "volumeMounts",
    "volumes",
    "labels",
    "failPodOnRunFailure",
    "resources",
    "schedulerName",
    "securityContext",
    "runK8sConfig",
}
CHART_RUN_K8S_CONFIG_KEYS = {
    "containerConfig": "container_config",
    "podSpecConfig": "pod_spec_config",
    "podTemplateSpecMetadata": "pod_template_spec_metadata",
    "jobSpecConfig": "job_spec_config",
    "jobMetadata": "job_metadata",
}


def chart_fullname(values: dict) -> str:
    """The chart's "dagster.fullname": the release name when it contains the chart's name."""
    return values.get("fullnameOverride") or (RELEASE if "dagster" in RELEASE else f"{RELEASE}-dagster")


def render_run_launcher(values: dict) -> dict:
    """The run_launcher config the chart's template dagsterYaml.runLauncher.k8s renders from ``values``: the
    chart's camelCase keys mapped to the launcher's snake_case ones exactly where the template maps them. Keys
    the template computes (service account, instance ConfigMap, Postgres secret, DAGSTER_HOME) come from the
    values they are computed from. An image is not rendered: with a code location, runs use its image."""
    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    chart = launcher["config"]["k8sRunLauncher"]
    unknown = set(chart) - CHART_K8S_RUN_LAUNCHER_KEYS
    assert not unknown, f"runLauncher.config.k8sRunLauncher: keys the chart does not have: {sorted(unknown)}"
    unknown = set(chart.get("runK8sConfig") or {}) - set(CHART_RUN_K8S_CONFIG_KEYS)
    assert not unknown, f"runLauncher.config.k8sRunLauncher.runK8sConfig: keys the chart does not have: {sorted(unknown)}"
    glob = values.get("global", {})
    config = {
        "load_incluster_config": chart["loadInclusterConfig"],
        "job_namespace": chart.get("jobNamespace") or NAMESPACE,
        "image_pull_policy": chart["imagePullPolicy"],
        "service_account_name": glob.get("serviceAccountName") or values.get("serviceAccount", {}).get("name") or chart_fullname(values),
        "dagster_home": glob.get("dagsterHome", "/opt/dagster/dagster_home"),
        "instance_config_map": f"{chart_fullname(values)}-instance",
        "postgres_password_secret": glob["postgresqlSecretName"],
    }
    if values.get("imagePullSecrets"):
        config["image_pull_secrets"] = values["imagePullSecrets"]
    if chart.get("kubeconfigFile"):
        config["kubeconfig_file"] = chart["kubeconfigFile"]
    if chart.get("envConfigMaps"):
        config["env_config_maps"] = [source["name"] for source in chart["envConfigMaps"] if "name" in source]
    if chart.get("envSecrets"):
        config["env_secrets"] = [source["name"] for source in chart["envSecrets"] if "name" in source]
    for chart_key, key in [
        ("envVars", "env_vars"),
        ("volumeMounts", "volume_mounts"),
        ("volumes", "volumes"),
        ("labels", "labels"),
        ("resources", "resources"),
        ("schedulerName", "scheduler_name"),
        ("securityContext", "security_context"),
    ]:
        if chart.get(chart_key):
            config[key] = chart[chart_key]
    if chart.get("failPodOnRunFailure"):
        config["fail_pod_on_run_failure"] = True
    if chart.get("runK8sConfig"):
        config["run_k8s_config"] = {CHART_RUN_K8S_CONFIG_KEYS[k]: v for k, v in chart["runK8sConfig"].items() if v}
    return config


def code_pools(defs) -> dict[str, set[str]]:
    """Pool → the steps (ops) of the code location's assets and checks that declare it."""
    pools: dict[str, set[str]] = {}
    for assets_def in defs.resolve_asset_graph().assets_defs:
        if not assets_def.is_executable:
            continue
        for op_def in assets_def.node_def.iterate_op_defs():
            if op_def.pool:
                pools.setdefault(op_def.pool, set()).add(op_def.name)
    return pools


def check_pool_limits(pools: dict[str, set[str]], default_limit: int, pool_limits: dict[str, int]) -> None:
    """Every pool the assets use has a limit the deployment chose: duckdb_writer 1 (the default), every other
    pool its own (gpu: the GPUs); and no limit names a pool the code does not use (a misspelled pool)."""
    assert isinstance(default_limit, int) and default_limit >= 1, f"concurrency.pools.default_limit: {default_limit!r}"
    stale = set(pool_limits) - set(pools)
    assert not stale, f"pool_limits names pools no asset uses: {sorted(stale)} (pools in use: {sorted(pools)})"
    undecided = set(pools) - set(pool_limits) - {DUCKDB_POOL}
    assert not undecided, f"pools without a deployment limit: {sorted(undecided)} (steps: {[sorted(pools[p]) for p in undecided]})"
    assert pool_limits.get(DUCKDB_POOL, default_limit) == 1, "duckdb_writer must stay 1: DuckDB allows one writer"
    for pool, limit in pool_limits.items():
        assert isinstance(limit, int) and limit >= 1, f"pool_limits.{pool}: {limit!r}"


# --- the files as shipped ----------------------------------------------------------------------------------


def test_instance_file_loads_as_a_dagster_instance(tmp_path):
    config = validate_instance(load(INSTANCE_FILE), tmp_path)
    assert config["run_launcher"]["module"] == "dagster_k8s" and config["run_launcher"]["class"] == "K8sRunLauncher"
    assert config["storage"]["postgres"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    assert config["run_monitoring"]["enabled"] is True


def test_instance_keeps_the_local_instance_limits():
    """The same pools, run limits and run monitoring as orchestration/dagster.yaml, the local instance."""
    local, cluster = load(REPO_ROOT / "orchestration" / "dagster.yaml"), load(INSTANCE_FILE)
    assert cluster["concurrency"] == local["concurrency"]
    assert cluster["run_monitoring"]["enabled"] and cluster["run_monitoring"]["free_slots_after_run_end_seconds"]


def test_run_launcher_config_against_k8s_run_launcher(deployment_env):
    config = validate_run_launcher(load(INSTANCE_FILE)["run_launcher"]["config"])
    assert config["job_image"] == DEPLOYMENT_ENV["RECDAG_IMAGE"]  # resolved from the environment
    assert config["instance_config_map"] == "dagster-instance"
    assert {"recdag-data", "recdag-lake"} <= {volume["name"] for volume in config["volumes"]}


def test_helm_run_launcher_renders_to_a_valid_launcher_config():
    values = load(VALUES_FILE)
    rendered = validate_run_launcher(render_run_launcher(values))
    instance = load(INSTANCE_FILE)["run_launcher"]["config"]
    # the chart's instance and deploy/k8s/dagster-instance.yaml describe one deployment
    for key in ["service_account_name", "job_namespace", "instance_config_map", "postgres_password_secret", "dagster_home"]:
        assert rendered[key] == instance[key], key
    assert UserDefinedDagsterK8sConfig.from_dict(rendered["run_k8s_config"]) == UserDefinedDagsterK8sConfig.from_dict(
        instance["run_k8s_config"]
    )


def test_helm_values_match_the_instance_file():
    values, instance = load(VALUES_FILE), load(INSTANCE_FILE)
    assert values["postgresql"]["enabled"] is False
    postgres = instance["storage"]["postgres"]["postgres_db"]
    assert values["postgresql"]["postgresqlHost"] == postgres["hostname"]
    assert values["postgresql"]["postgresqlUsername"] == postgres["username"]
    assert values["postgresql"]["postgresqlDatabase"] == postgres["db_name"]
    assert values["postgresql"]["service"]["port"] == postgres["port"]
    concurrency = values["concurrency"]
    assert concurrency["enabled"] is True
    assert concurrency["pools"]["defaultLimit"] == instance["concurrency"]["pools"]["default_limit"]
    assert concurrency["runs"]["maxConcurrentRuns"] == instance["concurrency"]["runs"]["max_concurrent_runs"]
    assert concurrency["runs"]["tagConcurrencyLimits"] == instance["concurrency"]["runs"]["tag_concurrency_limits"]
    monitoring = values["dagsterDaemon"]["runMonitoring"]
    assert monitoring["startTimeoutSeconds"] == instance["run_monitoring"]["start_timeout_seconds"]
    assert monitoring["pollIntervalSeconds"] == instance["run_monitoring"]["poll_interval_seconds"]


def test_helm_code_location_is_this_repository():
    """The user deployment loads workspace.yaml's module, sets only settings the code reads, and its volumes
    are valid Kubernetes volumes (the chart passes them to the run pods as the location's container context)."""
    (deployment,) = load(VALUES_FILE)["dagster-user-deployments"]["deployments"]
    workspace = load(REPO_ROOT / "workspace.yaml")
    assert deployment["codeServerArgs"] == ["-m", workspace["load_from"][0]["python_module"]["module_name"]]
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True
    read_by_code = set()
    for folder in ["resources", "orchestration", "assets"]:
        for source in (REPO_ROOT / folder).glob("*.py"):
            read_by_code |= set(re.findall(r"\bRECDAG_[A-Z0-9_]+\b", source.read_text()))
    env = deployment["env"]
    unknown = {name for name in env if name.startswith("RECDAG_")} - read_by_code
    assert not unknown, f"settings no code reads (misspelled?): {sorted(unknown)}"

    from resources import settings

    assert env["RECDAG_ENGINE"] in settings.ENGINES
    assert env["RECDAG_SPARK_REMOTE"].startswith("sc://")
    DagsterK8sJobConfig(volume_mounts=deployment["volumeMounts"], volumes=deployment["volumes"])
    mounted = {mount["mountPath"] for mount in deployment["volumeMounts"]}
    assert {env["RECDAG_DATA_DIR"], env["RECDAG_LAKE_DIR"]} <= mounted


def test_gpu_run_tag_is_valid_k8s_config():
    tag = validate_k8s_tag(load(GPU_FILE)["run_tags"][USER_DEFINED_K8S_CONFIG_KEY])
    assert tag.container_config["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert tag.pod_spec_config["node_selector"] and tag.pod_spec_config["tolerations"]


def test_job_tags_for_k8s_are_valid(code_location):
    """A ``dagster-k8s/config`` tag set on a job in code (e.g. train_and_evaluate's GPU tag) parses too."""
    for job in code_location.resolve_all_job_defs():
        if USER_DEFINED_K8S_CONFIG_KEY in job.tags:
            get_user_defined_k8s_config({USER_DEFINED_K8S_CONFIG_KEY: job.tags[USER_DEFINED_K8S_CONFIG_KEY]})


def test_k8s_job_executor_config_puts_exactly_the_gpu_steps_on_gpus(code_location):
    config = validate_executor_run_config(load(GPU_FILE)["executor_run_config"])
    gpu_steps = {step for step, step_config in config["per_step_k8s_config"].items() if "nvidia.com/gpu" in json.dumps(step_config)}
    assert gpu_steps == code_pools(code_location)[GPU_POOL]


def test_compute_run_config_fits_the_training_job(code_location):
    run_config = load(GPU_FILE)["run_config"]
    processed = dg.validate_run_config(code_location.resolve_job_def("train_and_evaluate"), run_config)
    assert processed["resources"]["compute"]["config"]["device"] == "cuda"


def test_instance_pools_cover_every_pool_the_assets_use(code_location):
    pools = code_pools(code_location)
    assert {DUCKDB_POOL, GPU_POOL} <= set(pools)
    default_limit = load(INSTANCE_FILE)["concurrency"]["pools"]["default_limit"]
    check_pool_limits(pools, default_limit, load(GPU_FILE)["pool_limits"])


# --- each validator rejects a typo -------------------------------------------------------------------------


def rename(mapping: dict, key: str, typo: str) -> None:
    mapping[typo] = mapping.pop(key)


def _launcher(doc: dict) -> dict:
    return doc["run_launcher"]["config"]


def _tag(doc: dict) -> dict:
    return doc["run_tags"][USER_DEFINED_K8S_CONFIG_KEY]


# case → (file, where the key is renamed, key, misspelling, the validator that must reject it)
TYPOS: dict[str, tuple[Path, Callable[[dict], dict], str, str, Callable[[dict, Path], object]]] = {
    "instance: run_monitoring key": (
        INSTANCE_FILE,
        lambda doc: doc["run_monitoring"],
        "free_slots_after_run_end_seconds",
        "free_slot_after_run_end_seconds",
        validate_instance,
    ),
    "instance: run_launcher key": (
        INSTANCE_FILE,
        _launcher,
        "service_account_name",
        "service_acount_name",
        lambda doc, _: validate_run_launcher(_launcher(doc)),
    ),
    "instance: run_k8s_config Kubernetes key": (
        INSTANCE_FILE,
        lambda doc: _launcher(doc)["run_k8s_config"]["pod_spec_config"],
        "node_selector",
        "node_selecter",
        lambda doc, _: validate_run_launcher(_launcher(doc)),
    ),
    "instance: volume key": (
        INSTANCE_FILE,
        lambda doc: _launcher(doc)["volumes"][0],
        "persistent_volume_claim",
        "persistent_volume_clam",
        lambda doc, _: validate_run_launcher(_launcher(doc)),
    ),
    "values: chart key": (
        VALUES_FILE,
        lambda doc: doc["runLauncher"]["config"]["k8sRunLauncher"],
        "runK8sConfig",
        "runK8sConfg",
        lambda doc, _: validate_run_launcher(render_run_launcher(doc)),
    ),
    "tag: section": (GPU_FILE, _tag, "pod_spec_config", "pod_spec_cfg", lambda doc, _: validate_k8s_tag(_tag(doc))),
    "tag: Kubernetes key": (
        GPU_FILE,
        lambda doc: _tag(doc)["container_config"],
        "resources",
        "resource",
        lambda doc, _: validate_k8s_tag(_tag(doc)),
    ),
    "executor: config key": (
        GPU_FILE,
        lambda doc: doc["executor_run_config"]["execution"]["config"],
        "per_step_k8s_config",
        "per_step_k8s_cfg",
        lambda doc, _: validate_executor_run_config(doc["executor_run_config"]),
    ),
    "pools: pool name": (
        GPU_FILE,
        lambda doc: doc["pool_limits"],
        GPU_POOL,
        "gpus",
        lambda doc, _: check_pool_limits({DUCKDB_POOL: {"split"}, GPU_POOL: {"sequence_ranker"}}, 1, doc["pool_limits"]),
    ),
}


@pytest.mark.parametrize("case", list(TYPOS))
def test_a_typo_fails(case, tmp_path, deployment_env):
    path, where, key, typo, validate = TYPOS[case]
    doc = load(path)
    validate(copy.deepcopy(doc), tmp_path)  # the file as shipped passes
    rename(where(doc), key, typo)
    with pytest.raises(Exception) as raised:  # noqa: B017 - Dagster config errors, Kubernetes model errors, assertions
        validate(doc, tmp_path)
    assert typo in str(raised.value), f"{case}: rejected for another reason: {raised.value!r}"
