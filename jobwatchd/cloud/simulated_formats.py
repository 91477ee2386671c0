"""The simulated cloud's job types and answers, in each service's own format.

A simulated job is only a timeline (:class:`SimJob`: a few wall-clock
instants drawn at creation); :func:`render` turns it and a clock reading into
the body the service's job API would answer, :func:`not_found` and
:func:`error_body` its error answers. Pure, no I/O: :mod:`jobwatchd.cloud.simulator`
serves them.

Sources (``notes §N``): the reference notes on the vendor's job APIs
(``shared/vendor/job-apis.md``), which quote the API Explorer definitions
("AE", ``mingyang91/huawei-cloud-api-definitions``
``schemas/<PRODUCT>/src/<Operation>.json``) and the doc pages; every renderer
follows its service's example answer field by field and names its section.
Job types come from the notes where they name some; error *codes* other than
the ones quoted there are the simulator's own (only their body shapes are the
vendor's).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from jobwatchd.services import SERVICES

# Statuses of the timeline, jobwatchd's words (the ECS family's as well).
INIT: Final = "INIT"
RUNNING: Final = "RUNNING"
PENDING_PAYMENT: Final = "PENDING_PAYMENT"
SUCCESS: Final = "SUCCESS"
FAIL: Final = "FAIL"


@dataclass(frozen=True, slots=True)
class JobSpec:
    """How one job type behaves: its sub-jobs, entities, duration and failures."""

    sub_job_type: str | None  # None: the job has no sub-jobs
    entity_key: str  # "server_id", "volume_id", "image_id"...
    creates_entity: bool  # the entity ID only appears once the (sub-)job runs
    median_duration: float  # simulated seconds, for a single-item job
    sigma: float  # log-normal shape
    failures: tuple[tuple[str, str], ...]  # (error_code, message) a failure draws from
    sub_job_types: tuple[str, ...] = ()
    """When set, the sub-jobs' types in turn (CCE's and ELB's sub-jobs are steps
    of different types); else every sub-job is a ``sub_job_type``."""

    def sub_type(self, index: int) -> str | None:
        """The job type of sub-job ``index``."""
        if self.sub_job_types:
            return self.sub_job_types[index % len(self.sub_job_types)]
        return self.sub_job_type


@dataclass(slots=True)
class SimSubJob:
    """One sub-job's timeline."""

    job_id: str
    entity_id: str
    begin: float  # wall-clock instants
    running: float
    end: float
    failure: tuple[str, str] | None
    job_type: str | None = None  # None: the spec's sub_job_type


@dataclass(slots=True)
class SimJob:
    """One job's timeline; ``service`` names its :data:`SERVICES` entry."""

    job_id: str
    project_id: str
    job_type: str
    spec: JobSpec
    duration: float  # simulated seconds, creation to terminal
    begin: float  # wall-clock instants
    running: float
    end: float
    failure: tuple[str, str] | None
    entity_id: str | None  # jobs without sub-jobs (and CCE's cluster)
    subs: tuple[SimSubJob, ...] | None  # jobs with sub-jobs
    created: float = 0.0  # wall-clock: before ``begin`` only while waiting for payment
    service: str = "ecs"


def timeline_status(running: float, end: float, failed: bool, now: float) -> str:
    """The (sub-)job's status at ``now``, in jobwatchd's words."""
    if now < running:
        return INIT
    if now < end:
        return RUNNING
    return FAIL if failed else SUCCESS


def format_time(t: float) -> str:
    """Format a unix time the vendor's way: ``2016-04-25T20:04:47.591Z`` (UTC)."""
    # Rounding (not truncating) keeps 1461614674.604 from printing as .603; it
    # is monotonic, so a sub-job never appears to end after its parent.
    millis = round(t * 1000)
    seconds, ms = divmod(millis, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}Z"


# ---------------------------------------------------------------- job types


def _spec(
    sub: str | None,
    key: str,
    creates: bool,
    median: float,
    failures: tuple[tuple[str, str], ...],
    *,
    sigma: float = 0.35,
    steps: tuple[str, ...] = (),
) -> JobSpec:
    return JobSpec(sub, key, creates, median, sigma, failures, steps)


_ECS_SPECS: Final[Mapping[str, JobSpec]] = {
    "createServer": _spec(
        "createSingleServer",
        "server_id",
        True,
        90.0,
        (
            ("Ecs.0013", "Insufficient EIP quota."),
            ("Ecs.0012", "Insufficient IP addresses."),
            ("Ecs.0001", "The number of ECSs is beyond the quota limit."),
        ),
    ),
    "deleteServer": _spec(
        "deleteSingleServer", "server_id", False, 45.0, (("Ecs.0100", "Invalid ECS status."),)
    ),
    "batchStartServer": _spec(
        "startSingleServer",
        "server_id",
        False,
        30.0,
        (("Ecs.0100", "Invalid ECS status."),),
        sigma=0.4,
    ),
    "batchStopServer": _spec(
        "stopSingleServer",
        "server_id",
        False,
        35.0,
        (("Ecs.0100", "Invalid ECS status."),),
        sigma=0.4,
    ),
    "batchRebootServer": _spec(
        "rebootSingleServer", "server_id", False, 60.0, (("Ecs.0100", "Invalid ECS status."),)
    ),
    "addNics": _spec(
        "addSingleNic",
        "nic_id",
        True,
        20.0,
        (
            ("Ecs.0010", "Private IP address 192.168.0.10 is already in use."),
            ("Ecs.0012", "Insufficient IP addresses."),
        ),
        sigma=0.4,
    ),
    "deleteNics": _spec(
        "deleteSingleNic",
        "nic_id",
        False,
        15.0,
        (("Ecs.1201", "Operation timed out."),),
        sigma=0.4,
    ),
    "resizeServer": _spec(
        None,
        "server_id",
        False,
        120.0,
        (("Ecs.0009", "Another flavor must be used for resizing."),),
    ),
}

_QUOTA: Final = (("Common.0019", "Insufficient quota."),)

SERVICE_SPECS: Final[Mapping[str, Mapping[str, JobSpec]]] = MappingProxyType(
    {
        "ecs": MappingProxyType(_ECS_SPECS),
        # notes §2d: EVS job types; sub-jobs carry volume_id (+ volume_type, size, name).
        "evs": MappingProxyType(
            {
                "createVolume": _spec(None, "volume_id", False, 20.0, _QUOTA),
                "batchCreateVolume": _spec("createVolume", "volume_id", True, 25.0, _QUOTA),
                "extendVolume": _spec(
                    None, "volume_id", False, 15.0, (("Common.0024", "Invalid disk status."),)
                ),
                "bulkDeleteVolume": _spec(
                    "deleteSingleVolume",
                    "volume_id",
                    False,
                    15.0,
                    (("Common.0024", "Invalid disk status."),),
                ),
            }
        ),
        # notes §3b, §3d: IMS job types; imsImportOvaImageJob's sub-jobs are imports.
        "ims": MappingProxyType(
            {
                "imsCreateImageByInstance": _spec(None, "image_id", True, 220.0, _QUOTA),
                "imsImportImageJob": _spec(None, "image_id", True, 350.0, _QUOTA),
                "imsImportOvaImageJob": _spec("imsImportImageJob", "image_id", True, 600.0, _QUOTA),
            }
        ),
        # notes §4a: BMS main and sub-job types; the ECS format.
        "bms": MappingProxyType(
            {
                "baremetalBatchCreate": _spec(
                    "baremetalSingleCreate", "server_id", True, 600.0, _QUOTA
                ),
                "baremetalBatchOperate": _spec(
                    "baremetalSingleOperate",
                    "server_id",
                    False,
                    120.0,
                    (("Common.0100", "Invalid server status."),),
                ),
                "baremetalAttachVolume": _spec(None, "server_id", False, 30.0, _QUOTA),
            }
        ),
        # notes §4b: createBatchPublicip (the example); sub-jobs are of the main
        # job's type (子job信息,类型与主job一致), so they are createBatchPublicip too.
        "vpc": MappingProxyType(
            {"createBatchPublicip": _spec("createBatchPublicip", "publicip_id", True, 5.0, _QUOTA)}
        ),
        # notes §5b: CreateCluster with its steps (InstallMaster, CreatePSMCert);
        # DeleteCluster, without sub-jobs, is the simulator's.
        "cce": MappingProxyType(
            {
                "CreateCluster": _spec(
                    "CreatePSMCert",
                    "resourceID",
                    False,
                    420.0,
                    (("CCE.01400001", "Insufficient ECS quota for the master nodes."),),
                    steps=("CreatePSMCert", "InstallMaster"),
                ),
                "DeleteCluster": _spec(
                    None,
                    "resourceID",
                    False,
                    180.0,
                    (("CCE.01400002", "The cluster still has nodes."),),
                ),
            }
        ),
        # notes §6b: UPGRADE with its steps.
        "elb": MappingProxyType(
            {
                "UPGRADE": _spec(
                    "UPGRADE_INIT",
                    "resource_id",
                    False,
                    60.0,
                    (("ELB.8905", "The load balancer upgrade failed."),),
                    steps=("UPGRADE_INIT", "UPGRADE_TRAFFIC_SWITCH", "UPGRADE_COMPLETE"),
                )
            }
        ),
        # notes §7: the names of the examples; no sub-jobs.
        "rds": MappingProxyType(
            {
                "CreateMysqlInstance": _spec(None, "instance_id", False, 300.0, _QUOTA),
                "CreateMysqlSingleHAInstance": _spec(None, "instance_id", False, 420.0, _QUOTA),
            }
        ),
        "taurusdb": MappingProxyType(
            {"CreateGaussDBforMySQLInstance": _spec(None, "instance_id", False, 480.0, _QUOTA)}
        ),
        "dds": MappingProxyType(
            {"Create_MongoDB": _spec(None, "instance_id", False, 360.0, _QUOTA)}
        ),
        "geminidb": MappingProxyType(
            {"CreateCassandra": _spec(None, "instance_id", False, 360.0, _QUOTA)}
        ),
        # notes §8d: the job_type enum.
        "dcs": MappingProxyType(
            {
                "masterStandbySwapJob": _spec(
                    None, "instance_id", False, 5.0, (("111400063", "The switchover failed."),)
                ),
                "modifyClientIpTransJob": _spec(
                    None,
                    "instance_id",
                    False,
                    10.0,
                    (("111400064", "Changing the source IP pass-through failed."),),
                ),
            }
        ),
        # notes §9b: bind_ldap (the example). The notes name no SFS Turbo job with
        # sub-jobs: batch_bind_ldap, whose sub-jobs are bind_ldap, is the simulator's.
        "sfs-turbo": MappingProxyType(
            {
                "bind_ldap": _spec(
                    None, "share_id", False, 5.0, (("SFS.TURBO.0001", "parameter error"),)
                ),
                "batch_bind_ldap": _spec(
                    "bind_ldap", "share_id", False, 10.0, (("SFS.TURBO.0001", "parameter error"),)
                ),
            }
        ),
    }
)
"""Every service's simulated job types (the first is its default)."""

UUID_JOB_IDS: Final = frozenset({"cce", "elb", "rds", "taurusdb", "dds", "geminidb", "sfs-turbo"})
"""Services whose job ids are UUIDs in the examples (the others: 32 hex digits)."""

INSTANCE_SUFFIXES: Final[Mapping[str, str]] = MappingProxyType(
    # notes §7: instance ids of the examples end "in01" (RDS), "in07" (TaurusDB),
    # "in02" (DDS), "in06" (GeminiDB).
    {"rds": "in01", "taurusdb": "in07", "dds": "in02", "geminidb": "in06"}
)

_NO_INIT: Final = frozenset({"rds", "rds-list", "sfs-turbo"})


def has_init(service: str) -> bool:
    """Whether the service's format has a word for a job not yet running: the RDS
    family (notes §7c: Running, Completed, Failed) and SFS Turbo (§9c) do not, so
    their jobs run from the start."""
    return SERVICES[service].answer_format not in _NO_INIT


# ---------------------------------------------------------------- renderers


def _progress(job: SimJob, now: float) -> float:
    """Percent done: rising with time while running, 100 once it succeeded."""
    if now < job.running:
        return 0.0
    if now >= job.end and job.failure is None:
        return 100.0
    span = job.end - job.running
    fraction = (min(now, job.end) - job.running) / span if span > 0 else 1.0
    return float(min(99, int(fraction * 100)))


def _ended(job: SimJob | SimSubJob, now: float) -> tuple[str, str] | None:
    """The failure, once the (sub-)job ended with one."""
    return job.failure if now >= job.end else None


def _sub_status(sub: SimSubJob, now: float) -> str:
    return timeline_status(sub.running, sub.end, sub.failure is not None, now)


def _started_subs(job: SimJob, now: float) -> list[tuple[int, SimSubJob]]:
    return [(i, sub) for i, sub in enumerate(job.subs or ()) if now >= sub.begin]


def _sub_type(job: SimJob, index: int, sub: SimSubJob) -> str:
    return sub.job_type or job.spec.sub_type(index) or job.job_type


def _status(job: SimJob, now: float) -> str:
    if now < job.begin:
        return PENDING_PAYMENT
    return timeline_status(job.running, job.end, job.failure is not None, now)


def ecs_body(job: SimJob, now: float) -> dict[str, Any]:
    """ECS and BMS (notes §1b, §4a): the ECS reference format."""
    spec = job.spec
    entities: dict[str, Any]
    if now < job.begin:  # waiting for payment: nothing has started
        return _ecs_record(
            status=PENDING_PAYMENT,
            entities={},
            job_id=job.job_id,
            job_type=job.job_type,
            begin=job.created,
            end=job.end,
            failure=None,
            now=now,
        )
    if job.subs is None or spec.sub_job_type is None:
        entities = {spec.entity_key: job.entity_id}
    else:
        sub_type = spec.sub_job_type
        sub_jobs = [_ecs_sub(sub, sub_type, spec, now) for sub in job.subs if now >= sub.begin]
        entities = {"sub_jobs_total": len(job.subs), "sub_jobs": sub_jobs}
    return _ecs_record(
        status=_status(job, now),
        entities=entities,
        job_id=job.job_id,
        job_type=job.job_type,
        begin=job.begin,
        end=job.end,
        failure=job.failure,
        now=now,
    )


def _ecs_sub_entities(sub: SimSubJob, spec: JobSpec, status: str) -> dict[str, Any]:
    entities: dict[str, Any] = {}
    # Like the real API, a creation's server_id / nic_id is known once it runs.
    if not spec.creates_entity or status != INIT:
        entities[spec.entity_key] = sub.entity_id
    return entities


def _ecs_sub(sub: SimSubJob, sub_type: str, spec: JobSpec, now: float) -> dict[str, Any]:
    status = _sub_status(sub, now)
    entities = _ecs_sub_entities(sub, spec, status)
    if status == FAIL and sub.failure is not None:
        # notes §1d: SubJobEntities.errorcode_message, why the sub-job failed.
        entities["errorcode_message"] = sub.failure[1]
    return _ecs_record(
        status=status,
        entities=entities,
        job_id=sub.job_id,
        job_type=sub_type,
        begin=sub.begin,
        end=sub.end,
        failure=sub.failure,
        now=now,
    )


def _ecs_record(
    *,
    status: str,
    entities: dict[str, Any],
    job_id: str,
    job_type: str,
    begin: float,
    end: float,
    failure: tuple[str, str] | None,
    now: float,
    not_ended: str | None = None,
) -> dict[str, Any]:
    """One (sub-)job object of the ECS family, its keys in the ECS doc example's order."""
    ended = now >= end
    error_code, fail_reason = failure if ended and failure is not None else (None, None)
    return {
        "status": status,
        "entities": entities,
        "job_id": job_id,
        "job_type": job_type,
        "begin_time": format_time(begin),
        "end_time": format_time(end) if ended else not_ended,
        "error_code": error_code,
        "fail_reason": fail_reason,
    }


def _volume(volume_id: str) -> dict[str, Any]:
    # notes §2d: a sub-job's entities are volume_type, size (GB), volume_id, name.
    return {
        "volume_type": "SSD",
        "size": 40,
        "volume_id": volume_id,
        "name": f"volume-{volume_id[:4]}",
    }


def evs_body(job: SimJob, now: float) -> dict[str, Any]:
    """EVS (notes §2b, §2d): the ECS shape; ``end_time`` is ``""`` until the job ends
    (the example); ``entities.volume_id``, or only ``sub_jobs`` when there are
    sub-jobs (no ``sub_jobs_total``)."""
    if job.subs is None:
        entities: dict[str, Any] = {"volume_id": job.entity_id}
    else:
        subs = []
        for index, sub in _started_subs(job, now):
            status = _sub_status(sub, now)
            shown = not job.spec.creates_entity or status != INIT
            subs.append(
                _ecs_record(
                    status=status,
                    entities=_volume(sub.entity_id) if shown else {},
                    job_id=sub.job_id,
                    job_type=_sub_type(job, index, sub),
                    begin=sub.begin,
                    end=sub.end,
                    failure=sub.failure,
                    now=now,
                    not_ended="",
                )
            )
        entities = {"sub_jobs": subs}
    return _ecs_record(
        status=_status(job, now),
        entities=entities,
        job_id=job.job_id,
        job_type=job.job_type,
        begin=job.begin,
        end=job.end,
        failure=job.failure,
        now=now,
        not_ended="",
    )


def _ims_record(record: dict[str, Any], entities: dict[str, Any]) -> dict[str, Any]:
    # notes §3b: the doc examples' order: job_id, job_type, begin_time, end_time,
    # status, error_code, fail_reason, entities.
    keys = ("job_id", "job_type", "begin_time", "end_time", "status", "error_code", "fail_reason")
    return {**{key: record[key] for key in keys}, "entities": entities}


def ims_body(job: SimJob, now: float) -> dict[str, Any]:
    """IMS (notes §3b, §3d, §3e): ``entities.image_name``/``image_id`` (once the
    image is being made), ``process_percent`` rising with time; sub-jobs as
    ``entities.sub_jobs_result[]`` and their ids in ``sub_jobs_list[]``."""
    status = _status(job, now)
    record = _ecs_record(
        status=status,
        entities={},
        job_id=job.job_id,
        job_type=job.job_type,
        begin=job.begin,
        end=job.end,
        failure=job.failure,
        now=now,
    )
    entities: dict[str, Any]
    if job.subs is None:
        entities = {}
        if status != INIT:
            entities = {"image_name": f"image-{job.job_id[:6]}", "image_id": job.entity_id}
    else:
        results = []
        for index, sub in _started_subs(job, now):
            sub_status = _sub_status(sub, now)
            sub_record = _ecs_record(
                status=sub_status,
                entities={},
                job_id=sub.job_id,
                job_type=_sub_type(job, index, sub),
                begin=sub.begin,
                end=sub.end,
                failure=sub.failure,
                now=now,
            )
            image = (
                {"image_name": f"image-{sub.job_id[:6]}", "image_id": sub.entity_id}
                if sub_status != INIT
                else {}
            )
            results.append(_ims_record(sub_record, image))
        entities = {
            "sub_jobs_result": results,
            "sub_jobs_list": [sub.job_id for sub in job.subs],
        }
    entities["process_percent"] = _progress(job, now)
    return _ims_record(record, entities)


def eip_body(job: SimJob, now: float) -> dict[str, Any]:
    """EIP jobs on the VPC host (notes §4b): the ECS shape, ``entities.sub_jobs``
    only (the example has no ``sub_jobs_total``); sub-jobs carry ``publicip_id``."""
    subs = []
    for index, sub in _started_subs(job, now):
        status = _sub_status(sub, now)
        subs.append(
            _ecs_record(
                status=status,
                entities=_ecs_sub_entities(sub, job.spec, status),
                job_id=sub.job_id,
                job_type=_sub_type(job, index, sub),
                begin=sub.begin,
                end=sub.end,
                failure=sub.failure,
                now=now,
            )
        )
    record = _ecs_record(
        status=_status(job, now),
        entities={"sub_jobs": subs},
        job_id=job.job_id,
        job_type=job.job_type,
        begin=job.begin,
        end=job.end,
        failure=job.failure,
        now=now,
    )
    # The example's order: ids, type and times first, entities last.
    return {**{k: v for k, v in record.items() if k != "entities"}, "entities": record["entities"]}


_CCE_PHASES: Final = MappingProxyType(
    # notes §5c: JobPhaseInitializing, Running, Failed, Success.
    {INIT: "Initializing", RUNNING: "Running", SUCCESS: "Success", FAIL: "Failed"}
)


def _cce_time(t: float) -> str:
    """CCE's timestamps: ``2018-08-02 08:12:40.672772389 +0000 UTC`` (notes §5d)."""
    micros = round(t * 1_000_000)
    seconds, fraction = divmod(micros, 1_000_000)
    return (
        time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + f".{fraction:06d}000 +0000 UTC"
    )


def _cce_updated(begin: float, running: float, end: float, now: float) -> float:
    return end if now >= end else running if now >= running else begin


def cce_body(job: SimJob, now: float) -> dict[str, Any]:
    """CCE (notes §5b-d): a Kubernetes-style Job: ``metadata.uid``, ``spec.type``,
    ``spec.subJobs[]`` (full Job objects), ``status.phase`` and ``status.reason``
    (the failure text, ``""`` otherwise)."""
    cluster = job.entity_id or ""
    status = _status(job, now)
    failure = _ended(job, now)
    sub_jobs = []
    for index, sub in _started_subs(job, now):
        sub_failure = _ended(sub, now)
        sub_jobs.append(
            {
                "kind": "Job",
                "apiVersion": "v3",
                "metadata": {
                    "uid": sub.job_id,
                    "creationTimestamp": _cce_time(sub.begin),
                    "updateTimestamp": _cce_time(
                        _cce_updated(sub.begin, sub.running, sub.end, now)
                    ),
                },
                "spec": {
                    "type": _sub_type(job, index, sub),
                    "clusterUID": cluster,
                    "resourceID": sub.entity_id,
                },
                "status": {
                    "phase": _CCE_PHASES[_sub_status(sub, now)],
                    "reason": sub_failure[1] if sub_failure else "",
                },
            }
        )
    spec: dict[str, Any] = {
        "type": job.job_type,
        "clusterUID": cluster,
        "resourceID": cluster,
        "resourceName": f"cluster-{cluster[:4]}",
    }
    if job.subs is not None:
        spec["subJobs"] = sub_jobs
    return {
        "kind": "Job",
        "apiVersion": "v3",
        "metadata": {
            "uid": job.job_id,
            "creationTimestamp": _cce_time(job.begin),
            "updateTimestamp": _cce_time(_cce_updated(job.begin, job.running, job.end, now)),
        },
        "spec": spec,
        "status": {"phase": _CCE_PHASES[status], "reason": failure[1] if failure else ""},
    }


def _elb_time(t: float) -> str:
    """ELB's timestamps: ``2024-03-23T08:20:42Z`` (notes §6b)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(round(t)))


def _elb_record(
    *,
    job_id: str,
    job_type: str,
    status: str,
    begin: float,
    end: float,
    failure: tuple[str, str] | None,
    project_id: str,
    resource_id: str,
    now: float,
) -> dict[str, Any]:
    error_code, error_msg = failure or ("", "")
    return {
        "job_id": job_id,
        "job_type": job_type,
        "status": status,
        "begin_time": _elb_time(begin),
        "end_time": _elb_time(end) if now >= end else "",
        "error_code": error_code,
        "error_msg": error_msg,
        "project_id": project_id,
        "resource_id": resource_id,
    }


def elb_body(job: SimJob, now: float, request_id: str) -> dict[str, Any]:
    """ELB v3 (notes §6b-d): ``{"job": {...}, "request_id"}``; the job goes INIT,
    RUNNING, then COMPLETE or FAIL; its ``sub_jobs[]`` end SUCCESS or FAIL and
    carry ``entities[]`` of ``{resource_id, resource_type}``; failures in
    ``error_code``/``error_msg`` (``""`` otherwise)."""
    balancer = job.entity_id or ""
    status = _status(job, now)
    sub_jobs = []
    for index, sub in _started_subs(job, now):
        record = _elb_record(
            job_id=sub.job_id,
            job_type=_sub_type(job, index, sub),
            status=_sub_status(sub, now),
            begin=sub.begin,
            end=sub.end,
            failure=_ended(sub, now),
            project_id=job.project_id,
            resource_id=balancer,
            now=now,
        )
        record["entities"] = [{"resource_id": balancer, "resource_type": "loadbalancer"}]
        sub_jobs.append(record)
    record = _elb_record(
        job_id=job.job_id,
        job_type=job.job_type,
        # notes §6c: the main job ends COMPLETE while its sub-jobs end SUCCESS.
        status="COMPLETE" if status == SUCCESS else status,
        begin=job.begin,
        end=job.end,
        failure=_ended(job, now),
        project_id=job.project_id,
        resource_id=balancer,
        now=now,
    )
    record["sub_jobs"] = sub_jobs
    return {"job": record, "request_id": request_id}


_RDS_STATUSES: Final = MappingProxyType(
    # notes §7.1c: Running, Completed, Failed.
    {RUNNING: "Running", SUCCESS: "Completed", FAIL: "Failed"}
)
_DATASTORES: Final = MappingProxyType(
    # notes §7.1b, §7.4: the examples' entities.instance.
    {
        "rds": ({"type": "mysql", "version": "8.0"}, "Single"),
        "taurusdb": ({"type": "gaussdb-mysql", "version": "8.0"}, "Cluster"),
    }
)
_INSTANCE_NAMES: Final = MappingProxyType(
    {"rds": "rds", "taurusdb": "gauss", "dds": "dds", "geminidb": "nosql"}
)


def _rds_time(t: float) -> str:
    """The RDS family's timestamps: ``2018-08-06T16:41:14+0000`` (notes §7)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(round(t)))


def rds_body(job: SimJob, now: float) -> dict[str, Any]:
    """RDS, TaurusDB, DDS (notes §7.1, §7.4, §7.2): ``{"job": {id, name, status,
    created, ended, process, instance, entities, fail_reason}}``: ``process`` is
    ``"60%"`` while running, ``""`` otherwise; DDS says ``progress`` and has no
    ``entities``; GeminiDB's list-style answer is :func:`rds_list_body`."""
    status = _status(job, now)
    ended = now >= job.end
    instance_id = job.entity_id or ""
    percent = f"{_progress(job, now):.0f}%" if status == RUNNING else ""
    body: dict[str, Any] = {
        "id": job.job_id,
        "name": job.job_type,
        "status": _RDS_STATUSES[status],
        "created": _rds_time(job.begin),
        "ended": _rds_time(job.end) if ended else None,
    }
    body["progress" if job.service == "dds" else "process"] = percent
    body["instance"] = {"id": instance_id, "name": _instance_name(job)}
    if job.service in _DATASTORES:
        datastore, kind = _DATASTORES[job.service]
        body["entities"] = {
            "instance": {
                "datastore": dict(datastore),
                "endpoint": "192.168.0.23:3306",
                "type": kind,
            },
            # The schema's name (notes §7.1 "Inconsistency"; the TaurusDB example).
            "resource_ids": [f"{instance_id}.vm", f"{instance_id}.volume"],
        }
    failure = _ended(job, now)
    body["fail_reason"] = failure[1] if failure else None
    return {"job": body}


def _instance_name(job: SimJob) -> str:
    return f"{_INSTANCE_NAMES.get(job.service, 'db')}-{(job.entity_id or '')[:4]}"


def rds_list_body(job: SimJob, now: float) -> dict[str, Any]:
    """GeminiDB (notes §7.3): ``{"jobs": [{id, name, status, start_time, end_time,
    progress, instance, fail_reason}], "total_count": 1}``, every field a string
    (``""`` when it has no value)."""
    status = _status(job, now)
    failure = _ended(job, now)
    item = {
        "id": job.job_id,
        "name": job.job_type,
        "status": _RDS_STATUSES[status],
        "start_time": _rds_time(job.begin),
        "end_time": _rds_time(job.end) if now >= job.end else "",
        "progress": f"{_progress(job, now):.0f}%" if status == RUNNING else "",
        "instance": {"id": job.entity_id or "", "name": _instance_name(job)},
        "fail_reason": failure[1] if failure else "",
    }
    return {"jobs": [item], "total_count": 1}


def dcs_body(job: SimJob, now: float) -> dict[str, Any]:
    """DCS (notes §8b-e): the flat record ``{job_id, job_type, status, begin_time,
    end_time, fail_reason}``, times as epoch-millisecond strings (``""`` until it
    ended). The schema's ``fail_reason`` is sent, not the example's typo ``fail_resson``."""
    failure = _ended(job, now)
    return {
        "job_id": job.job_id,
        "job_type": job.job_type,
        "status": _status(job, now),
        "begin_time": str(round(job.begin * 1000)),
        "end_time": str(round(job.end * 1000)) if now >= job.end else "",
        "fail_reason": failure[1] if failure else None,
    }


_SFS_STATUSES: Final = MappingProxyType(
    # notes §9c: success, running, failed (waiting is not simulated).
    {RUNNING: "running", SUCCESS: "success", FAIL: "failed"}
)


def _sfs_time(t: float) -> str:
    """SFS Turbo's timestamps: ``2023-07-26 09:33:58`` (UTC, notes §9d)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(round(t)))


def _sfs_record(
    job_id: str, job_type: str, status: str, begin: float, end: float, failure: Any, now: float
) -> dict[str, Any]:
    error_code, fail_reason = failure or (None, None)
    return {
        "status": _SFS_STATUSES[status],
        "job_id": job_id,
        "job_type": job_type,
        "begin_time": _sfs_time(begin),
        "end_time": _sfs_time(end) if now >= end else "",
        "error_code": error_code,
        "fail_reason": fail_reason,
    }


def sfs_turbo_body(job: SimJob, now: float) -> dict[str, Any]:
    """SFS Turbo (notes §9b-d): lower-case statuses, the required fields (``status,
    job_id, job_type, begin_time, end_time, error_code, fail_reason, sub_jobs``),
    top-level ``sub_jobs[]`` of the same fields, no entities."""
    record = _sfs_record(
        job.job_id, job.job_type, _status(job, now), job.begin, job.end, _ended(job, now), now
    )
    record["sub_jobs"] = [
        _sfs_record(
            sub.job_id,
            _sub_type(job, index, sub),
            _sub_status(sub, now),
            sub.begin,
            sub.end,
            _ended(sub, now),
            now,
        )
        for index, sub in _started_subs(job, now)
    ]
    return record


def render(job: SimJob, now: float, request_id: str = "") -> dict[str, Any]:
    """The body ``job``'s service answers at ``now`` (``request_id``: ELB's)."""
    answer_format = SERVICES[job.service].answer_format
    if answer_format == "ecs":
        return ecs_body(job, now)
    if answer_format == "elb":
        return elb_body(job, now, request_id)
    return _RENDERERS[answer_format](job, now)


_RENDERERS: Final = MappingProxyType(
    {
        "evs": evs_body,
        "ims": ims_body,
        "eip": eip_body,
        "cce": cce_body,
        "rds": rds_body,
        "rds-list": rds_list_body,
        "dcs": dcs_body,
        "sfs-turbo": sfs_turbo_body,
    }
)


def without_status(service: str, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with its status field removed where the format keeps it: inside
    the envelope of a nested format (``status.phase``, ``job.status``,
    ``jobs[0].status``), at the top of a flat one."""
    answer_format = SERVICES[service].answer_format
    if answer_format == "cce":
        return {**body, "status": {k: v for k, v in body["status"].items() if k != "phase"}}
    if answer_format in {"elb", "rds"}:
        job = {k: v for k, v in body["job"].items() if k != "status"}
        return {**body, "job": job}
    if answer_format == "rds-list":
        items = [{k: v for k, v in item.items() if k != "status"} for item in body["jobs"]]
        return {**body, "jobs": items}
    return {k: v for k, v in body.items() if k != "status"}


# ---------------------------------------------------------------- errors


@dataclass(frozen=True, slots=True)
class ErrorStyle:
    """A service's error answers: the body shape and the codes used for each case."""

    shape: str  # "ecs": {"error": {code, message}}; "v3": {error_code, error_msg}; "sfs"
    not_found: tuple[int, str, str]  # HTTP status, code, message
    server_error: tuple[str, str]
    rejected: tuple[str, str]
    request_id: bool = False  # the body carries request_id (ELB)


_ECS_ERRORS: Final = ErrorStyle(
    "ecs",
    (400, "Common.0011", "Failed to obtain the job."),
    ("Common.0001", "System error."),
    ("Ecs.0005", "Invalid request parameter."),
)
_RDS_ERRORS: Final = ErrorStyle(
    # notes §7.1d: {"error_code","error_msg"}, e.g. DBS.200022.
    "v3",
    (404, "DBS.200022", "The job does not exist."),
    ("DBS.200001", "Internal server error."),
    ("DBS.200025", "Invalid parameter."),
)

ERROR_STYLES: Final[Mapping[str, ErrorStyle]] = MappingProxyType(
    {
        # notes §1d, §2b: {"error": {"code", "message"}} for the ECS family.
        "ecs": _ECS_ERRORS,
        "evs": _ECS_ERRORS,
        "ims": _ECS_ERRORS,
        "bms": _ECS_ERRORS,
        "vpc": _ECS_ERRORS,
        # The v3 services' {"error_code", "error_msg"} (notes §7.1d, §8b): CCE and
        # ELB have no error example in the notes; ELB adds its request_id.
        "cce": ErrorStyle(
            "v3",
            (404, "CCE.01404001", "The job does not exist."),
            ("CCE.01500001", "Internal server error."),
            ("CCE.01400001", "Invalid request."),
        ),
        "elb": ErrorStyle(
            "v3",
            (404, "ELB.8904", "The job does not exist."),
            ("ELB.1000", "Internal server error."),
            ("ELB.8902", "Invalid parameter."),
            request_id=True,
        ),
        "rds": _RDS_ERRORS,
        "taurusdb": _RDS_ERRORS,
        "dds": _RDS_ERRORS,
        "geminidb": _RDS_ERRORS,
        "dcs": ErrorStyle(
            "v3",
            (404, "111404001", "The job does not exist."),
            ("111500001", "Internal server error."),
            # notes §8b: the AE error example.
            ("111400063", "Invalid {0} parameter in the request."),
        ),
        # notes §9d: {"errCode", "errMsg"}; SFS.TURBO.0001 and .0005 are the examples.
        "sfs-turbo": ErrorStyle(
            "sfs",
            (404, "SFS.TURBO.0002", "The job does not exist."),
            ("SFS.TURBO.0005", "Internal server error"),
            ("SFS.TURBO.0001", "parameter error"),
        ),
    }
)


def error_body(service: str, code: str, message: str, request_id: str) -> dict[str, Any]:
    """An error answer's body in ``service``'s shape."""
    style = ERROR_STYLES[service]
    if style.shape == "ecs":
        return {"error": {"code": code, "message": message}}
    if style.shape == "sfs":
        return {"errCode": code, "errMsg": message}
    body: dict[str, Any] = {"error_code": code, "error_msg": message}
    if style.request_id:
        body["request_id"] = request_id
    return body


def not_found(
    service: str, request_id: str, status: int | None = None
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of ``service``'s "no such job" (``status`` overrides the status)."""
    code_status, code, message = ERROR_STYLES[service].not_found
    return status or code_status, error_body(service, code, message, request_id)
