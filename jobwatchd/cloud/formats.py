"""The answer formats of the services' job APIs (:mod:`jobwatchd.services`),
one adapter each behind one interface: a decoded body in, a
:class:`ServiceAnswer` (a :class:`jobwatchd.statemachine.JobAnswer`) out, or
:class:`~jobwatchd.cloud.ecs.MalformedResponse`. Pure, no I/O.

Each adapter maps the vendor's statuses to jobwatchd's ``INIT``/``RUNNING``/
``SUCCESS``/``FAIL`` where the vendor's meaning is that one; a documented
status without such a meaning (``PENDING_PAYMENT``, ELB's ``ROLLBACKING``,
SFS Turbo's ``waiting``...) and an undocumented one are passed through as
:func:`jobwatchd.models.upstream_status` records them, so they stay
non-terminal. The vendor's own word is kept in ``upstream_status``.

Sources (``notes §N``): the reference notes on the vendor's job APIs, which
quote the API Explorer definitions ("AE", ``mingyang91/huawei-cloud-api-definitions``
``schemas/<PRODUCT>/src/<Operation>.json``) verbatim; each adapter names its
file and doc page. Strings and lists are bounded as in :mod:`jobwatchd.cloud.ecs`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Final, Protocol

from jobwatchd.cloud.ecs import (
    MAX_SUB_JOBS,
    JobResponse,
    MalformedResponse,
    TooManySubJobs,
    is_status_name,
    parse_response,
)
from jobwatchd.models import (
    FAIL,
    INIT,
    MAX_STATUS_LENGTH,
    MAX_TEXT_LENGTH,
    RUNNING,
    SUCCESS,
    UPSTREAM_STATUSES,
    bounded_text,
    is_terminal,
    upstream_status,
)
from jobwatchd.statemachine import JobAnswer

__all__ = [
    "DOCUMENT_KEYS",
    "FORMATS",
    "AnswerFormat",
    "JobNotListed",
    "MalformedResponse",
    "PollParser",
    "ServiceAnswer",
    "ServiceSubJob",
    "TooManySubJobs",
    "parse_answer",
    "parse_cce",
    "parse_dcs",
    "parse_ecs",
    "parse_eip",
    "parse_elb",
    "parse_evs",
    "parse_ims",
    "parse_rds",
    "parse_rds_list",
    "parse_sfs_turbo",
    "poll_parser",
]


class JobNotListed(MalformedResponse):
    """A list-style answer that does not hold the job asked for (or holds several)."""


# ---------------------------------------------------------------- the answer


@dataclass(frozen=True, slots=True)
class ServiceSubJob:
    """One sub-job of a :class:`ServiceAnswer` (a ``SubJobAnswer``)."""

    job_id: str
    status: str
    upstream_status: str
    job_type: str | None = None
    entities: dict[str, Any] = field(default_factory=dict)
    error_code: str | None = None
    fail_reason: str | None = None
    begin_time: str | None = None
    end_time: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The sub-job in the ECS family's shape (``status`` is jobwatchd's,
        ``upstream_status`` the vendor's word)."""
        return {
            "job_id": self.job_id,
            "status": self.status,
            "upstream_status": self.upstream_status,
            "job_type": self.job_type,
            "entities": self.entities,
            "error_code": self.error_code,
            "fail_reason": self.fail_reason,
            "begin_time": self.begin_time,
            "end_time": self.end_time,
        }


@dataclass(frozen=True, slots=True)
class ServiceAnswer:
    """One job as a service's job API reported it.

    ``status`` is jobwatchd's (mapped, or passed through); ``upstream_status``
    the vendor's word. ``resource_ids`` are the ids the format documents
    (``server_id``, ``volume_id``, ``image_id``, ``resourceID``, instance
    ids...), each 1-64 printable ASCII characters; ``entities`` is the
    vendor's entity object as reported. ``progress`` is the percentage the
    vendor reports, when it reports one.
    """

    answer_format: str
    status: str
    upstream_status: str
    job_id: str | None = None
    job_type: str | None = None
    entities: dict[str, Any] = field(default_factory=dict)
    resource_ids: Mapping[str, str] = field(default_factory=dict)
    error_code: str | None = None
    fail_reason: str | None = None
    begin_time: str | None = None
    end_time: str | None = None
    sub_jobs: tuple[ServiceSubJob, ...] = ()
    sub_jobs_total: int | None = None
    progress: float | None = None
    code: str | None = None
    message: str | None = None
    documented: frozenset[str] = frozenset()
    """Pass-through statuses the format documents (not worth a log line)."""

    @property
    def terminal(self) -> bool:
        """Whether the mapped status ends tracking."""
        return is_terminal(self.status)

    @property
    def recorded_entities(self) -> dict[str, Any]:
        """What a job's record keeps as its entities: the vendor's, plus the
        sub-jobs in the ECS family's shape (``sub_jobs``, ``sub_jobs_total``)
        when the format lists them elsewhere, so every service's job object
        reads alike."""
        if not self.sub_jobs or "sub_jobs" in self.entities:
            return self.entities
        return {
            **self.entities,
            "sub_jobs": [sub.to_json() for sub in self.sub_jobs],
            "sub_jobs_total": self.sub_jobs_total,
        }

    @property
    def sub_jobs_succeeded(self) -> int:
        """Sub-jobs that reached SUCCESS."""
        return sum(1 for sub in self.sub_jobs if sub.status == SUCCESS)

    @property
    def sub_jobs_failed(self) -> int:
        """Sub-jobs that reached FAIL."""
        return sum(1 for sub in self.sub_jobs if sub.status == FAIL)

    @property
    def sub_jobs_done(self) -> int:
        """Sub-jobs that reached a terminal status (progress of a batch)."""
        return sum(1 for sub in self.sub_jobs if is_terminal(sub.status))

    @property
    def unexpected_statuses(self) -> frozenset[str]:
        """Statuses neither jobwatchd's nor documented by the format, passed through."""
        known = UPSTREAM_STATUSES | self.documented
        seen = {self.status, *(sub.status for sub in self.sub_jobs)}
        return frozenset(seen - known)


class AnswerFormat(Protocol):
    """Parse one decoded answer body; raise :class:`MalformedResponse` when it is
    not a job status document, :class:`TooManySubJobs` past ``max_sub_jobs``.
    ``job_id`` picks the job out of a list-style answer (ignored by the others)."""

    def __call__(
        self, body: object, *, job_id: str | None = None, max_sub_jobs: int = MAX_SUB_JOBS
    ) -> ServiceAnswer: ...


# ---------------------------------------------------------------- helpers


def _text(container: Mapping[str, Any], key: str) -> str | None:
    """A string field, bounded; None when absent, not a string, or empty."""
    value = container.get(key)
    if not isinstance(value, str) or not value:
        return None
    return value if len(value) <= MAX_TEXT_LENGTH else bounded_text(value)


def _object(container: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = container.get(key)
    return value if isinstance(value, Mapping) else _EMPTY


def _id(container: Mapping[str, Any], key: str) -> str | None:
    value = container.get(key)
    return value if is_status_name(value) else None


def _ids(**found: str | None) -> Mapping[str, str]:
    return MappingProxyType({key: value for key, value in found.items() if value is not None})


_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _mapped(value: str, mapping: Mapping[str, str]) -> tuple[str, str]:
    mapped = mapping.get(value)
    if mapped is not None:
        return mapped, value
    return (value if value in UPSTREAM_STATUSES else upstream_status(value)), value


def _status(value: object, mapping: Mapping[str, str], what: str) -> tuple[str, str]:
    """(jobwatchd's status, the vendor's) for a job's status, or :class:`MalformedResponse`."""
    if not isinstance(value, str) or not value:
        raise MalformedResponse(f"response has no {what}")
    if not is_status_name(value):
        raise MalformedResponse(
            f"response {what} is not 1-{MAX_STATUS_LENGTH} printable ASCII characters"
        )
    return _mapped(value, mapping)


def _sub_status(value: object, mapping: Mapping[str, str]) -> tuple[str, str] | None:
    """As :func:`_status` for a sub-job; None when unusable (the sub-job is skipped)."""
    return _mapped(value, mapping) if is_status_name(value) else None


def _flat_sub_jobs(
    raw: object,
    statuses: Mapping[str, str],
    max_sub_jobs: int,
    *,
    reason_key: str = "fail_reason",
    entities: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None,
) -> list[ServiceSubJob]:
    """Sub-jobs listed as flat records (``job_id, job_type, status, begin_time,
    end_time, error_code`` and a reason under ``reason_key``); as cloud/ecs.py,
    one without a usable id or status is skipped, not failing the parent."""
    subs: list[ServiceSubJob] = []
    for item in _bounded_list(raw, "sub-jobs", max_sub_jobs):
        if not isinstance(item, Mapping):
            continue
        sub_id = _id(item, "job_id")
        state = _sub_status(item.get("status"), statuses)
        if sub_id is None or state is None:
            continue
        subs.append(
            ServiceSubJob(
                job_id=sub_id,
                status=state[0],
                upstream_status=state[1],
                job_type=_text(item, "job_type"),
                entities={} if entities is None else entities(item),
                error_code=_text(item, "error_code"),
                fail_reason=_text(item, reason_key),
                begin_time=_text(item, "begin_time"),
                end_time=_text(item, "end_time"),
            )
        )
    return subs


def _bounded_list(value: object, what: str, limit: int) -> list[Any]:
    if not isinstance(value, list):
        return []
    if len(value) > limit:
        raise TooManySubJobs(f"response lists {len(value)} {what}, more than {limit}")
    return value


def _progress_percent(value: object) -> float | None:
    """``"60%"`` or a number as a float percentage; None when absent or unusable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip().removesuffix("%").strip()
        if not text or len(text) > 16 or not text.isascii():
            return None
        try:
            number = float(text)
        except ValueError:
            return None
    elif isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:  # an int past float's range
            return None
    else:
        return None
    return number if math.isfinite(number) and 0.0 <= number <= 100.0 else None


def _top(body: object) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise MalformedResponse("response body is not a JSON object")
    return body


def _envelope(body: object, key: str) -> Mapping[str, Any]:
    value = _top(body).get(key)
    if not isinstance(value, Mapping):
        raise MalformedResponse(f"response has no {key!r} object")
    return value


# ---------------------------------------------------------------- the ECS family

# notes §1c (AE schemas/ECS/src/ShowJob.json; doc ecs_02_0901): SUCCESS, RUNNING,
# FAIL, INIT, PENDING_PAYMENT are jobwatchd's names already: cloud/ecs.py parses them.
# notes §2c (doc evs_04_0054): EVS adds WAITING_EXECUTE and LISTENING, both non-terminal.
_EVS_DOCUMENTED: Final = frozenset({"WAITING_EXECUTE", "LISTENING"})


def _from_ecs(
    response: JobResponse,
    answer_format: str,
    resource_ids: Mapping[str, str],
    *,
    documented: frozenset[str] = frozenset(),
    progress: float | None = None,
) -> ServiceAnswer:
    raw = response.body.get("status")
    return ServiceAnswer(
        answer_format=answer_format,
        status=response.status,
        upstream_status=raw if isinstance(raw, str) else response.status,
        job_id=_id(response.body, "job_id"),
        # cloud/ecs.py keeps "" as reported; here "" is no value, as in every format.
        job_type=response.job_type or None,
        entities=response.entities,
        resource_ids=resource_ids,
        error_code=response.error_code or None,
        fail_reason=response.fail_reason or None,
        begin_time=response.begin_time or None,
        end_time=response.end_time or None,
        sub_jobs=tuple(
            ServiceSubJob(
                job_id=sub.job_id,
                status=sub.status,
                upstream_status=_raw_status(sub.element, sub.status),
                job_type=sub.job_type or None,
                entities=sub.entities,
                error_code=sub.error_code or None,
                # notes §1d: SubJobEntities.errorcode_message, why the sub-job failed.
                fail_reason=sub.fail_reason or _text(sub.entities, "errorcode_message"),
                begin_time=sub.begin_time or None,
                end_time=sub.end_time or None,
            )
            for sub in response.sub_jobs
        ),
        sub_jobs_total=response.sub_jobs_total,
        progress=progress,
        code=response.code,
        message=response.message,
        documented=documented,
    )


def _raw_status(element: Mapping[str, Any], fallback: str) -> str:
    raw = element.get("status")
    return raw if isinstance(raw, str) else fallback


def parse_ecs(
    body: object, *, job_id: str | None = None, max_sub_jobs: int = MAX_SUB_JOBS
) -> ServiceAnswer:
    """ECS and BMS (notes §1, §4a: AE schemas/ECS/src/ShowJob.json,
    schemas/BMS/src/ShowJobInfos.json): :func:`jobwatchd.cloud.ecs.parse_response`;
    the resource ids are ``entities.server_id`` / ``nic_id`` (AE JobEntities)."""
    response = parse_response(_top(body), max_sub_jobs=max_sub_jobs)
    ids = _ids(
        server_id=_id(response.entities, "server_id"), nic_id=_id(response.entities, "nic_id")
    )
    return _from_ecs(response, "ecs", ids)


def parse_evs(
    body: object, *, job_id: str | None = None, max_sub_jobs: int = MAX_SUB_JOBS
) -> ServiceAnswer:
    """EVS (notes §2: AE schemas/EVS/src/ShowJob.json; doc evs_04_0054): the ECS
    shape; ``entities.volume_id`` (absent when sub-jobs are listed, per the doc)."""
    response = parse_response(_top(body), max_sub_jobs=max_sub_jobs)
    ids = _ids(volume_id=_id(response.entities, "volume_id"))
    return _from_ecs(response, "evs", ids, documented=_EVS_DOCUMENTED)


def parse_ims(
    body: object, *, job_id: str | None = None, max_sub_jobs: int = MAX_SUB_JOBS
) -> ServiceAnswer:
    """IMS (notes §3: AE schemas/IMS/src/ShowJob.json; doc ims_03_0905): the ECS
    shape, but sub-jobs are ``entities.sub_jobs_result[]`` (ids in
    ``sub_jobs_list[]``) and progress is ``entities.process_percent`` (a number;
    the vendor states no scale, so it is kept only within 0-100)."""
    top = _top(body)
    entities = _object(top, "entities")
    results = entities.get("sub_jobs_result")
    view: Mapping[str, Any] = top
    if isinstance(results, list):
        # Shown to the ECS parser as its sub_jobs; the caller's body is not changed.
        view = {**top, "entities": {**entities, "sub_jobs": results}}
    response = parse_response(view, max_sub_jobs=max_sub_jobs)
    listed = _bounded_list(entities.get("sub_jobs_list"), "sub-job ids", max_sub_jobs)
    ids = _ids(image_id=_id(entities, "image_id"))
    answer = _from_ecs(
        response, "ims", ids, progress=_progress_percent(entities.get("process_percent"))
    )
    total = len(listed) if listed else answer.sub_jobs_total
    # The vendor's entities as reported, not the view shown to the ECS parser.
    return replace(answer, entities=dict(entities), sub_jobs_total=total)


def parse_eip(
    body: object, *, job_id: str | None = None, max_sub_jobs: int = MAX_SUB_JOBS
) -> ServiceAnswer:
    """EIP jobs on the VPC host (notes §4b: AE schemas/EIP/src/ShowResourcesJobDetail.json;
    https://support.huaweicloud.com/eu/api-eip/ShowResourcesJobDetail.html): the ECS
    shape; statuses are not enumerated there, so jobwatchd's names are read as ECS's."""
    response = parse_response(_top(body), max_sub_jobs=max_sub_jobs)
    ids = _ids(
        publicip_id=_id(response.entities, "publicip_id"),
        bandwidth_id=_id(response.entities, "bandwidth_id"),
    )
    return _from_ecs(response, "eip", ids)


# ---------------------------------------------------------------- CCE

# notes §5c (AE schemas/CCE/src/ShowJob.json): "JobPhaseInitializing ... Running ...
# Failed ... Success".
_CCE_STATUSES: Final = MappingProxyType(
    {"Initializing": INIT, "Running": RUNNING, "Success": SUCCESS, "Failed": FAIL}
)


def _cce_spec_entities(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: spec[key]
        for key in ("resourceID", "resourceName", "clusterUID", "extendParam")
        if key in spec
    }


def _cce_ids(spec: Mapping[str, Any]) -> Mapping[str, str]:
    return _ids(
        resourceID=_id(spec, "resourceID"),
        clusterUID=_id(spec, "clusterUID"),
        serverID=_id(_object(spec, "extendParam"), "serverID"),
    )


def parse_cce(
    body: object, *, job_id: str | None = None, max_sub_jobs: int = MAX_SUB_JOBS
) -> ServiceAnswer:
    """CCE (notes §5: AE schemas/CCE/src/ShowJob.json): a Kubernetes-style Job:
    ``status.phase`` (+ ``status.reason``, the failure text), ``metadata.uid``,
    ``spec.type``, sub-jobs ``spec.subJobs[]`` (full Job objects; one level read)."""
    top = _top(body)
    status = _object(top, "status")
    mapped, raw = _status(status.get("phase"), _CCE_STATUSES, "status.phase")
    metadata, spec = _object(top, "metadata"), _object(top, "spec")
    subs: list[ServiceSubJob] = []
    for item in _bounded_list(spec.get("subJobs"), "sub-jobs", max_sub_jobs):
        if not isinstance(item, Mapping):
            continue
        sub_id = _id(_object(item, "metadata"), "uid")
        sub_state = _sub_status(_object(item, "status").get("phase"), _CCE_STATUSES)
        if sub_id is None or sub_state is None:
            continue  # as cloud/ecs.py: an unusable sub-job does not fail the parent
        sub_spec = _object(item, "spec")
        subs.append(
            ServiceSubJob(
                job_id=sub_id,
                status=sub_state[0],
                upstream_status=sub_state[1],
                job_type=_text(sub_spec, "type"),
                entities=_cce_spec_entities(sub_spec),
                fail_reason=_text(_object(item, "status"), "reason"),
                begin_time=_text(_object(item, "metadata"), "creationTimestamp"),
            )
        )
    return ServiceAnswer(
        answer_format="cce",
        status=mapped,
        upstream_status=raw,
        job_id=_id(metadata, "uid"),
        job_type=_text(spec, "type"),
        entities=_cce_spec_entities(spec),
        resource_ids=_cce_ids(spec),
        fail_reason=_text(status, "reason"),
        begin_time=_text(metadata, "creationTimestamp"),
        sub_jobs=tuple(subs),
        sub_jobs_total=len(subs) if subs else None,
    )


# ---------------------------------------------------------------- ELB v3

# notes §6c (AE schemas/ELB/src/ShowJob.json; https://support.huaweicloud.com/api-elb/ListJobs.html):
# the main job ends COMPLETE while its sub-jobs end SUCCESS. FAIL (任务处理失败),
# ROLLBACK_FAIL (回退失败) and CANCEL (已取消) end it without success: Terraform's
# checkLoadBalancerJobFinish (resource_huaweicloud_elb_loadbalancer_copy.go) ends its
# wait with an error on anything but RUNNING or COMPLETE. ROLLBACKING (任务正在回退)
# is still in progress and passes through.
_ELB_STATUSES: Final = MappingProxyType(
    {
        "INIT": INIT,
        "RUNNING": RUNNING,
        "SUCCESS": SUCCESS,
        "COMPLETE": SUCCESS,
        "FAIL": FAIL,
        "ROLLBACK_FAIL": FAIL,
        "CANCEL": FAIL,
    }
)
_ELB_DOCUMENTED: Final = frozenset({"ROLLBACKING"})


def _elb_entities(item: Mapping[str, Any], limit: int) -> dict[str, Any]:
    resources = [
        {"resource_id": entity["resource_id"], "resource_type": _text(entity, "resource_type")}
        for entity in _bounded_list(item.get("entities"), "entities", limit)
        if isinstance(entity, Mapping) and is_status_name(entity.get("resource_id"))
    ]
    return {"resources": resources} if resources else {}


def parse_elb(
    body: object, *, job_id: str | None = None, max_sub_jobs: int = MAX_SUB_JOBS
) -> ServiceAnswer:
    """ELB v3 (notes §6: AE schemas/ELB/src/ShowJob.json): ``{"job": {...},
    "request_id"}``; ``job.status``, ``job.sub_jobs[]`` with ``entities[]``
    (``{resource_id, resource_type}``), failures in ``error_code``/``error_msg``."""
    job = _envelope(body, "job")
    mapped, raw = _status(job.get("status"), _ELB_STATUSES, "job.status")
    subs = _flat_sub_jobs(
        job.get("sub_jobs"),
        _ELB_STATUSES,
        max_sub_jobs,
        reason_key="error_msg",
        entities=lambda item: _elb_entities(item, max_sub_jobs),
    )
    return ServiceAnswer(
        answer_format="elb",
        status=mapped,
        upstream_status=raw,
        job_id=_id(job, "job_id"),
        job_type=_text(job, "job_type"),
        entities=_elb_entities(job, max_sub_jobs),
        resource_ids=_ids(resource_id=_id(job, "resource_id")),
        error_code=_text(job, "error_code"),
        fail_reason=_text(job, "error_msg"),
        begin_time=_text(job, "begin_time"),
        end_time=_text(job, "end_time"),
        sub_jobs=tuple(subs),
        sub_jobs_total=len(subs) if subs else None,
        documented=_ELB_DOCUMENTED,
    )


# ---------------------------------------------------------------- the RDS family

# notes §7.1c (AE schemas/RDS/src/ListJobInfo.json): enum ["Running","Completed","Failed"];
# §7.3 GeminiDB the same; §7.2 DDS gives no enum (Terraform waits Running → Completed);
# §7.4 TaurusDB adds Pending (延时任务,未执行: a delayed task not yet run), passed through.
_RDS_STATUSES: Final = MappingProxyType({"Running": RUNNING, "Completed": SUCCESS, "Failed": FAIL})
_RDS_DOCUMENTED: Final = frozenset({"Pending"})


def _rds_answer(
    job: Mapping[str, Any], answer_format: str, *, begin: str, end: str, limit: int
) -> ServiceAnswer:
    mapped, raw = _status(job.get("status"), _RDS_STATUSES, "job status")
    entities = _object(job, "entities")
    instance = _object(job, "instance")
    # The RDS example says entities.resource_id, the AE schema and doc resource_ids
    # (notes §7.1 "Inconsistency"): either is read.
    listed = entities.get("resource_ids", entities.get("resource_id"))
    resources = [
        item for item in _bounded_list(listed, "resource ids", limit) if is_status_name(item)
    ]
    ids = {"instance_id": _id(instance, "id")}
    ids.update({f"resource_ids[{index}]": value for index, value in enumerate(resources)})
    # RDS and TaurusDB report progress as "process", DDS and GeminiDB as "progress"
    # (notes §7.1e, §7.2, §7.3): "60%" while running, "" otherwise.
    progress = _progress_percent(job.get("process", job.get("progress")))
    return ServiceAnswer(
        answer_format=answer_format,
        status=mapped,
        upstream_status=raw,
        job_id=_id(job, "id"),
        job_type=_text(job, "name"),
        entities=dict(entities),
        resource_ids=_ids(**ids),
        fail_reason=_text(job, "fail_reason"),
        begin_time=_text(job, begin),
        end_time=_text(job, end),
        progress=progress,
        documented=_RDS_DOCUMENTED,
    )


def parse_rds(
    body: object, *, job_id: str | None = None, max_sub_jobs: int = MAX_SUB_JOBS
) -> ServiceAnswer:
    """RDS, TaurusDB and DDS (notes §7.1, §7.4, §7.2: AE schemas/RDS/src/ListJobInfo.json,
    schemas/GaussDB/src/ShowGaussMySqlJobInfo.json, schemas/DDS/src/ShowJobDetail.json):
    ``{"job": {id, name, status, created, ended, process|progress, instance,
    entities, fail_reason}}``; no sub-jobs."""
    job = _envelope(body, "job")
    return _rds_answer(job, "rds", begin="created", end="ended", limit=max_sub_jobs)


def parse_rds_list(
    body: object, *, job_id: str | None = None, max_sub_jobs: int = MAX_SUB_JOBS
) -> ServiceAnswer:
    """GeminiDB (notes §7.3: AE schemas/GaussDBforNoSQL/src/ListJobs.json): the
    list-style answer ``{"jobs": [...], "total_count": N}`` of
    ``GET /v3/{project_id}/jobs?id=``; the item whose ``id`` is ``job_id``
    (or the only item, when no ``job_id`` is given), :class:`JobNotListed` if none."""
    top = _top(body)
    jobs = top.get("jobs")
    if not isinstance(jobs, list):
        raise MalformedResponse("response has no 'jobs' list")
    items = [
        item for item in _bounded_list(jobs, "jobs", max_sub_jobs) if isinstance(item, Mapping)
    ]
    if job_id is not None:
        items = [item for item in items if item.get("id") == job_id]
    if len(items) != 1:
        raise JobNotListed(
            f"response lists {len(items)} jobs"
            + (" with the id asked for" if job_id is not None else "")
            + ", not exactly one"
        )
    return _rds_answer(items[0], "rds-list", begin="start_time", end="end_time", limit=max_sub_jobs)


# ---------------------------------------------------------------- DCS

# notes §8c (AE schemas/DCS/src/ShowJobInfo.json): enum INIT, RUNNING, SUCCESS, FAIL:
# jobwatchd's names already.
_SAME: Final[Mapping[str, str]] = MappingProxyType({})


def parse_dcs(
    body: object, *, job_id: str | None = None, max_sub_jobs: int = MAX_SUB_JOBS
) -> ServiceAnswer:
    """DCS (notes §8: AE schemas/DCS/src/ShowJobInfo.json): a flat record
    ``{job_id, job_type, status, begin_time, end_time, fail_reason}``; times are
    epoch-millisecond strings, kept as reported; the vendor's example spells
    ``fail_resson``, which is read too."""
    top = _top(body)
    mapped, raw = _status(top.get("status"), _SAME, "status")
    return ServiceAnswer(
        answer_format="dcs",
        status=mapped,
        upstream_status=raw,
        job_id=_id(top, "job_id"),
        job_type=_text(top, "job_type"),
        fail_reason=_text(top, "fail_reason") or _text(top, "fail_resson"),
        begin_time=_text(top, "begin_time"),
        end_time=_text(top, "end_time"),
    )


# ---------------------------------------------------------------- SFS Turbo

# notes §9c (AE schemas/SFSTurbo/src/ShowJobDetail.json): enum
# ["success","failed","waiting","running"]; waiting (等待执行) passes through. The
# sub-job field's AE example says "FAIL": jobwatchd's own names are read as such.
_SFS_TURBO_STATUSES: Final = MappingProxyType(
    {"success": SUCCESS, "running": RUNNING, "failed": FAIL}
)
_SFS_TURBO_DOCUMENTED: Final = frozenset({"waiting"})


def parse_sfs_turbo(
    body: object, *, job_id: str | None = None, max_sub_jobs: int = MAX_SUB_JOBS
) -> ServiceAnswer:
    """SFS Turbo (notes §9: AE schemas/SFSTurbo/src/ShowJobDetail.json): lower-case
    ``status``, top-level ``sub_jobs[]`` (``job_id, job_type, status, begin_time,
    end_time, error_code, fail_reason``), no entities."""
    top = _top(body)
    mapped, raw = _status(top.get("status"), _SFS_TURBO_STATUSES, "status")
    subs = _flat_sub_jobs(top.get("sub_jobs"), _SFS_TURBO_STATUSES, max_sub_jobs)
    return ServiceAnswer(
        answer_format="sfs-turbo",
        status=mapped,
        upstream_status=raw,
        job_id=_id(top, "job_id"),
        job_type=_text(top, "job_type"),
        error_code=_text(top, "error_code"),
        fail_reason=_text(top, "fail_reason"),
        begin_time=_text(top, "begin_time"),
        end_time=_text(top, "end_time"),
        sub_jobs=tuple(subs),
        sub_jobs_total=len(subs) if subs else None,
        documented=_SFS_TURBO_DOCUMENTED,
    )


FORMATS: Mapping[str, AnswerFormat] = MappingProxyType(
    {
        "ecs": parse_ecs,
        "evs": parse_evs,
        "ims": parse_ims,
        "eip": parse_eip,
        "cce": parse_cce,
        "elb": parse_elb,
        "rds": parse_rds,
        "rds-list": parse_rds_list,
        "dcs": parse_dcs,
        "sfs-turbo": parse_sfs_turbo,
    }
)
"""Every answer format by the name :class:`jobwatchd.services.Service` uses."""

DOCUMENT_KEYS: Mapping[str, str] = MappingProxyType(
    {
        "ecs": "status",
        "evs": "status",
        "ims": "status",
        "eip": "status",
        "cce": "status",
        "elb": "job",
        "rds": "job",
        "rds-list": "jobs",
        "dcs": "status",
        "sfs-turbo": "status",
    }
)
"""The top-level key a format's job document always has: a 200 answer without
it (and any answer with an ``error`` object) is read as an error body."""


class PollParser(Protocol):
    """What polling reads an answer with: as :class:`AnswerFormat`, but any
    :class:`~jobwatchd.statemachine.JobAnswer` will do."""

    def __call__(
        self, body: object, *, job_id: str | None = None, max_sub_jobs: int = MAX_SUB_JOBS
    ) -> JobAnswer: ...


def _parse_ecs_shape(
    body: object, *, job_id: str | None = None, max_sub_jobs: int = MAX_SUB_JOBS
) -> JobAnswer:
    return parse_response(_top(body), max_sub_jobs=max_sub_jobs)


_LAZY_FORMATS: Final = frozenset({"ecs", "evs", "eip"})
"""Formats that are the ECS document as it is, with only other resource ids
(:func:`parse_ecs`, :func:`parse_evs`, :func:`parse_eip` differ in nothing a poll
reads): polls read them with :func:`jobwatchd.cloud.ecs.parse_response`,
whose lazy answer costs a quarter of a :class:`ServiceAnswer`."""


def poll_parser(answer_format: str) -> PollParser:
    """The parser polls of ``answer_format`` use; :class:`KeyError` if unknown."""
    if answer_format not in FORMATS:
        raise KeyError(f"unknown answer format {answer_format!r}: known are {', '.join(FORMATS)}")
    return _parse_ecs_shape if answer_format in _LAZY_FORMATS else FORMATS[answer_format]


def parse_answer(
    answer_format: str,
    body: object,
    *,
    job_id: str | None = None,
    max_sub_jobs: int = MAX_SUB_JOBS,
) -> ServiceAnswer:
    """Parse ``body`` in ``answer_format``; :class:`KeyError` for an unknown format."""
    try:
        parser = FORMATS[answer_format]
    except KeyError:
        raise KeyError(
            f"unknown answer format {answer_format!r}: known are {', '.join(FORMATS)}"
        ) from None
    return parser(body, job_id=job_id, max_sub_jobs=max_sub_jobs)
