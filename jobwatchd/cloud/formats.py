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

Bodies are decoded JSON, so objects are checked as ``dict`` (an ABC check
against ``Mapping`` costs four times as much, on every poll).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, NamedTuple, Protocol

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
    "LazyAnswer",
    "LazySubJob",
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


# Not frozen: a frozen dataclass's __init__ sets each field through
# object.__setattr__, three times the cost, and a poll makes one of these per
# sub-job. Nothing changes an answer once parsed.
@dataclass(slots=True)
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


@dataclass(slots=True)  # not frozen, as ServiceSubJob
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
    return value if isinstance(value, dict) else _EMPTY


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
    if isinstance(value, str):  # the words known already need no checking
        mapped = mapping.get(value)
        if mapped is not None:
            return mapped, value
        if value in UPSTREAM_STATUSES:
            return value, value
    if not isinstance(value, str) or not value:
        raise MalformedResponse(f"response has no {what}")
    if not is_status_name(value):
        raise MalformedResponse(
            f"response {what} is not 1-{MAX_STATUS_LENGTH} printable ASCII characters"
        )
    return _mapped(value, mapping)


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
        # Read on every poll; the texts are few ("0%" to "100%", ""), so cached.
        return _percent_text(value) if len(value) <= _MAX_PERCENT_TEXT else None
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:  # an int past float's range
            return None
    else:
        return None
    return _percentage(number)


_MAX_PERCENT_TEXT: Final = 32


@functools.lru_cache(maxsize=256)
def _percent_text(value: str) -> float | None:
    text = value.strip().removesuffix("%").strip()
    if not text or len(text) > 16 or not text.isascii():
        return None
    try:
        return _percentage(float(text))
    except ValueError:
        return None


def _percentage(number: float) -> float | None:
    return number if math.isfinite(number) and 0.0 <= number <= 100.0 else None


def _top(body: object) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise MalformedResponse("response body is not a JSON object")
    return body


def _envelope(body: object, key: str) -> Mapping[str, Any]:
    value = _top(body).get(key)
    if not isinstance(value, dict):
        raise MalformedResponse(f"response has no {key!r} object")
    return value


# ---------------------------------------------------------------- checked, then described
#
# Each variant format reads an answer in two steps: checking what every poll
# compares (the job's status, each sub-job's id and status, every bound that
# can reject the answer) into a _Checked, then describing the rest (types,
# times, entities, reasons) into a ServiceAnswer. Parsing (FORMATS) does both;
# polling (poll_parser) checks and describes only when a transition is
# recorded, as cloud/ecs.py does for the ECS family. Both read the same
# checked sub-jobs, so they cannot disagree on which sub-jobs there are.


class LazySubJob(NamedTuple):
    """A sub-job whose id and status are checked; the rest is read from its
    ``element`` by ``describe`` when asked for (a ``SubJobAnswer``)."""

    job_id: str
    status: str
    upstream_status: str
    element: Mapping[str, Any]
    describe: Callable[[LazySubJob], ServiceSubJob]

    @property
    def described(self) -> ServiceSubJob:
        """The whole sub-job."""
        return self.describe(self)

    @property
    def job_type(self) -> str | None:
        """The sub-job's type."""
        return self.describe(self).job_type

    @property
    def entities(self) -> dict[str, Any]:
        """The sub-job's entities."""
        return self.describe(self).entities

    @property
    def error_code(self) -> str | None:
        """The sub-job's error code, if any."""
        return self.describe(self).error_code

    @property
    def fail_reason(self) -> str | None:
        """Why the sub-job failed, if it did."""
        return self.describe(self).fail_reason

    @property
    def begin_time(self) -> str | None:
        """When the sub-job began (vendor format)."""
        return self.describe(self).begin_time

    @property
    def end_time(self) -> str | None:
        """When the sub-job ended (vendor format)."""
        return self.describe(self).end_time


class _Checked(NamedTuple):
    """An answer's job document with what every poll reads of it checked."""

    document: Mapping[str, Any]
    status: str
    upstream_status: str
    sub_jobs: tuple[LazySubJob, ...]


def _job_id_field(element: Mapping[str, Any]) -> object:
    return element.get("job_id")


def _status_field(element: Mapping[str, Any]) -> object:
    return element.get("status")


def _checked_sub_jobs(
    raw: object,
    statuses: Mapping[str, str],
    limit: int,
    describe: Callable[[LazySubJob], ServiceSubJob],
    *,
    id_of: Callable[[Mapping[str, Any]], object] = _job_id_field,
    status_of: Callable[[Mapping[str, Any]], object] = _status_field,
) -> tuple[LazySubJob, ...]:
    """The usable sub-jobs of a list; as cloud/ecs.py, one without a usable id
    or status is skipped, not failing the parent."""
    subs: list[LazySubJob] = []
    for element in _bounded_list(raw, "sub-jobs", limit):
        if not isinstance(element, dict):
            continue
        sub_id = id_of(element)
        status = status_of(element)
        if not isinstance(status, str) or not is_status_name(sub_id):
            continue
        mapped = statuses.get(status)
        if mapped is not None:  # a word known already: valid as it is
            subs.append(LazySubJob(sub_id, mapped, status, element, describe))
        elif status in UPSTREAM_STATUSES:
            subs.append(LazySubJob(sub_id, status, status, element, describe))
        elif is_status_name(status):
            mapped, upstream = _mapped(status, statuses)
            subs.append(LazySubJob(sub_id, mapped, upstream, element, describe))
    return tuple(subs)


def _described_sub_jobs(subs: tuple[LazySubJob, ...]) -> tuple[ServiceSubJob, ...]:
    return tuple(sub.describe(sub) for sub in subs)


def _flat_sub_job(
    sub: LazySubJob,
    *,
    reason_key: str = "fail_reason",
    entities: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None,
) -> ServiceSubJob:
    """A sub-job listed as a flat record (``job_id, job_type, status,
    begin_time, end_time, error_code`` and a reason under ``reason_key``)."""
    element = sub.element
    return ServiceSubJob(
        job_id=sub.job_id,
        status=sub.status,
        upstream_status=sub.upstream_status,
        job_type=_text(element, "job_type"),
        entities={} if entities is None else entities(element),
        error_code=_text(element, "error_code"),
        fail_reason=_text(element, reason_key),
        begin_time=_text(element, "begin_time"),
        end_time=_text(element, "end_time"),
    )


def _no_progress(document: Mapping[str, Any]) -> float | None:
    return None


class _Variant(NamedTuple):
    """A variant format: how its answers are checked, described, and what a
    poll reads of them (the job's own id, the progress reported)."""

    check: Callable[[object, str | None, int], _Checked]
    describe: Callable[[_Checked], ServiceAnswer]
    job_id: Callable[[Mapping[str, Any]], str | None]
    progress: Callable[[Mapping[str, Any]], float | None]
    known: frozenset[str]
    """jobwatchd's statuses and the pass-through ones the format documents."""

    def parse(self, body: object, job_id: str | None, limit: int) -> ServiceAnswer:
        return self.describe(self.check(body, job_id, limit))


class LazyAnswer:
    """A poll's answer in a variant format: status, sub-jobs, the job's id
    and progress read when parsed; the rest described (as
    :class:`ServiceAnswer`) when first asked for. A ``JobAnswer``; it keeps
    the decoded body, which must not change afterwards."""

    __slots__ = ("_checked", "_described", "_variant", "job_id", "progress", "status", "sub_jobs")

    def __init__(self, checked: _Checked, variant: _Variant) -> None:
        self._checked = checked
        self._variant = variant
        self._described: ServiceAnswer | None = None
        self.status = checked.status
        self.sub_jobs = checked.sub_jobs
        self.job_id = variant.job_id(checked.document)
        self.progress = variant.progress(checked.document)

    @property
    def described(self) -> ServiceAnswer:
        """The whole answer (described once)."""
        if self._described is None:
            self._described = self._variant.describe(self._checked)
        return self._described

    @property
    def upstream_status(self) -> str:
        """The vendor's word for the status."""
        return self._checked.upstream_status

    @property
    def job_type(self) -> str | None:
        """The job's type."""
        return self.described.job_type

    @property
    def entities(self) -> dict[str, Any]:
        """The vendor's entities as reported."""
        return self.described.entities

    @property
    def recorded_entities(self) -> dict[str, Any]:
        """As :attr:`ServiceAnswer.recorded_entities`."""
        return self.described.recorded_entities

    @property
    def error_code(self) -> str | None:
        """The job's error code, if any."""
        return self.described.error_code

    @property
    def fail_reason(self) -> str | None:
        """Why the job failed, if it did."""
        return self.described.fail_reason

    @property
    def begin_time(self) -> str | None:
        """When the job began (vendor format)."""
        return self.described.begin_time

    @property
    def end_time(self) -> str | None:
        """When the job ended (vendor format)."""
        return self.described.end_time

    @property
    def sub_jobs_total(self) -> int | None:
        """How many sub-jobs the vendor says there are."""
        return self.described.sub_jobs_total

    @property
    def code(self) -> str | None:
        """A top-level error code reported with the document."""
        return self.described.code

    @property
    def message(self) -> str | None:
        """A top-level message reported with the document."""
        return self.described.message

    @property
    def sub_jobs_succeeded(self) -> int:
        """Sub-jobs that reached SUCCESS."""
        return sum(1 for sub in self.sub_jobs if sub.status == SUCCESS)

    @property
    def sub_jobs_failed(self) -> int:
        """Sub-jobs that reached FAIL."""
        return sum(1 for sub in self.sub_jobs if sub.status == FAIL)

    @property
    def unexpected_statuses(self) -> frozenset[str]:
        """As :attr:`ServiceAnswer.unexpected_statuses`."""
        known = self._variant.known
        if self.status in known and all(sub.status in known for sub in self.sub_jobs):
            return _NONE
        return frozenset({self.status, *(sub.status for sub in self.sub_jobs)} - known)


_NONE: Final[frozenset[str]] = frozenset()


def _variant(
    check: Callable[[object, str | None, int], _Checked],
    describe: Callable[[_Checked], ServiceAnswer],
    job_id: Callable[[Mapping[str, Any]], str | None],
    *,
    progress: Callable[[Mapping[str, Any]], float | None] = _no_progress,
    documented: frozenset[str] = frozenset(),
) -> _Variant:
    return _Variant(check, describe, job_id, progress, UPSTREAM_STATUSES | documented)


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


# ---------------------------------------------------------------- IMS

# jobwatchd's names, as ECS's (notes §3c: the IMS doc lists SUCCESS, FAIL, RUNNING, INIT).
_SAME: Final[Mapping[str, str]] = MappingProxyType({})


def _ims_sub_job(sub: LazySubJob) -> ServiceSubJob:
    element = sub.element
    entities = element.get("entities")
    entities = entities if isinstance(entities, dict) else {}
    return ServiceSubJob(
        job_id=sub.job_id,
        status=sub.status,
        upstream_status=sub.upstream_status,
        job_type=_text(element, "job_type"),
        entities=entities,
        error_code=_text(element, "error_code"),
        # notes §1d: SubJobEntities.errorcode_message, why the sub-job failed.
        fail_reason=_text(element, "fail_reason") or _text(entities, "errorcode_message"),
        begin_time=_text(element, "begin_time"),
        end_time=_text(element, "end_time"),
    )


def _ims_check(body: object, job_id: str | None, limit: int) -> _Checked:
    top = _top(body)
    mapped, raw = _status(top.get("status"), _SAME, "status")
    entities = _object(top, "entities")
    _bounded_list(entities.get("sub_jobs_list"), "sub-job ids", limit)
    subs = _checked_sub_jobs(entities.get("sub_jobs_result"), _SAME, limit, _ims_sub_job)
    return _Checked(top, mapped, raw, subs)


def _ims_progress(document: Mapping[str, Any]) -> float | None:
    return _progress_percent(_object(document, "entities").get("process_percent"))


def _ims_describe(checked: _Checked) -> ServiceAnswer:
    top = checked.document
    entities = _object(top, "entities")
    listed = entities.get("sub_jobs_list")
    total = entities.get("sub_jobs_total")
    if isinstance(listed, list) and listed:
        total = len(listed)
    elif isinstance(total, bool) or not isinstance(total, int):
        total = len(checked.sub_jobs) or None
    return ServiceAnswer(
        answer_format="ims",
        status=checked.status,
        upstream_status=checked.upstream_status,
        job_id=_id(top, "job_id"),
        job_type=_text(top, "job_type"),
        entities=dict(entities),
        resource_ids=_ids(image_id=_id(entities, "image_id")),
        error_code=_text(top, "error_code"),
        fail_reason=_text(top, "fail_reason"),
        begin_time=_text(top, "begin_time"),
        end_time=_text(top, "end_time"),
        sub_jobs=_described_sub_jobs(checked.sub_jobs),
        sub_jobs_total=total,
        progress=_ims_progress(top),
        code=_text(top, "code"),
        message=_text(top, "message"),
    )


def _top_job_id(document: Mapping[str, Any]) -> str | None:
    return _id(document, "job_id")


_IMS: Final = _variant(_ims_check, _ims_describe, _top_job_id, progress=_ims_progress)


def parse_ims(
    body: object, *, job_id: str | None = None, max_sub_jobs: int = MAX_SUB_JOBS
) -> ServiceAnswer:
    """IMS (notes §3: AE schemas/IMS/src/ShowJob.json; doc ims_03_0905): the ECS
    shape, but sub-jobs are ``entities.sub_jobs_result[]`` (ids in
    ``sub_jobs_list[]``) and progress is ``entities.process_percent`` (a number;
    the vendor states no scale, so it is kept only within 0-100)."""
    return _IMS.parse(body, job_id, max_sub_jobs)


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


def _cce_uid(element: Mapping[str, Any]) -> object:
    return _object(element, "metadata").get("uid")


def _cce_phase(element: Mapping[str, Any]) -> object:
    return _object(element, "status").get("phase")


def _cce_sub_job(sub: LazySubJob) -> ServiceSubJob:
    spec = _object(sub.element, "spec")
    return ServiceSubJob(
        job_id=sub.job_id,
        status=sub.status,
        upstream_status=sub.upstream_status,
        job_type=_text(spec, "type"),
        entities=_cce_spec_entities(spec),
        fail_reason=_text(_object(sub.element, "status"), "reason"),
        begin_time=_text(_object(sub.element, "metadata"), "creationTimestamp"),
    )


def _cce_check(body: object, job_id: str | None, limit: int) -> _Checked:
    top = _top(body)
    mapped, raw = _status(_cce_phase(top), _CCE_STATUSES, "status.phase")
    subs = _checked_sub_jobs(
        _object(top, "spec").get("subJobs"),
        _CCE_STATUSES,
        limit,
        _cce_sub_job,
        id_of=_cce_uid,
        status_of=_cce_phase,
    )
    return _Checked(top, mapped, raw, subs)


def _cce_job_id(document: Mapping[str, Any]) -> str | None:
    return _id(_object(document, "metadata"), "uid")


def _cce_describe(checked: _Checked) -> ServiceAnswer:
    top = checked.document
    spec = _object(top, "spec")
    return ServiceAnswer(
        answer_format="cce",
        status=checked.status,
        upstream_status=checked.upstream_status,
        job_id=_cce_job_id(top),
        job_type=_text(spec, "type"),
        entities=_cce_spec_entities(spec),
        resource_ids=_cce_ids(spec),
        fail_reason=_text(_object(top, "status"), "reason"),
        begin_time=_text(_object(top, "metadata"), "creationTimestamp"),
        sub_jobs=_described_sub_jobs(checked.sub_jobs),
        sub_jobs_total=len(checked.sub_jobs) or None,
    )


_CCE: Final = _variant(_cce_check, _cce_describe, _cce_job_id)


def parse_cce(
    body: object, *, job_id: str | None = None, max_sub_jobs: int = MAX_SUB_JOBS
) -> ServiceAnswer:
    """CCE (notes §5: AE schemas/CCE/src/ShowJob.json): a Kubernetes-style Job:
    ``status.phase`` (+ ``status.reason``, the failure text), ``metadata.uid``,
    ``spec.type``, sub-jobs ``spec.subJobs[]`` (full Job objects; one level read)."""
    return _CCE.parse(body, job_id, max_sub_jobs)


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


def _elb_entities(item: Mapping[str, Any]) -> dict[str, Any]:
    """``{resource_id, resource_type}`` entities (their number checked by _elb_check)."""
    listed = item.get("entities")
    resources = [
        {"resource_id": entity["resource_id"], "resource_type": _text(entity, "resource_type")}
        for entity in (listed if isinstance(listed, list) else ())
        if isinstance(entity, dict) and is_status_name(entity.get("resource_id"))
    ]
    return {"resources": resources} if resources else {}


def _elb_sub_job(sub: LazySubJob) -> ServiceSubJob:
    return _flat_sub_job(sub, reason_key="error_msg", entities=_elb_entities)


def _elb_check(body: object, job_id: str | None, limit: int) -> _Checked:
    job = _envelope(body, "job")
    mapped, raw = _status(job.get("status"), _ELB_STATUSES, "job.status")
    _bounded_list(job.get("entities"), "entities", limit)
    subs = _checked_sub_jobs(job.get("sub_jobs"), _ELB_STATUSES, limit, _elb_sub_job)
    for sub in subs:
        _bounded_list(sub.element.get("entities"), "entities", limit)
    return _Checked(job, mapped, raw, subs)


def _elb_describe(checked: _Checked) -> ServiceAnswer:
    job = checked.document
    return ServiceAnswer(
        answer_format="elb",
        status=checked.status,
        upstream_status=checked.upstream_status,
        job_id=_id(job, "job_id"),
        job_type=_text(job, "job_type"),
        entities=_elb_entities(job),
        resource_ids=_ids(resource_id=_id(job, "resource_id")),
        error_code=_text(job, "error_code"),
        fail_reason=_text(job, "error_msg"),
        begin_time=_text(job, "begin_time"),
        end_time=_text(job, "end_time"),
        sub_jobs=_described_sub_jobs(checked.sub_jobs),
        sub_jobs_total=len(checked.sub_jobs) or None,
        documented=_ELB_DOCUMENTED,
    )


_ELB: Final = _variant(_elb_check, _elb_describe, _top_job_id, documented=_ELB_DOCUMENTED)


def parse_elb(
    body: object, *, job_id: str | None = None, max_sub_jobs: int = MAX_SUB_JOBS
) -> ServiceAnswer:
    """ELB v3 (notes §6: AE schemas/ELB/src/ShowJob.json): ``{"job": {...},
    "request_id"}``; ``job.status``, ``job.sub_jobs[]`` with ``entities[]``
    (``{resource_id, resource_type}``), failures in ``error_code``/``error_msg``."""
    return _ELB.parse(body, job_id, max_sub_jobs)


# ---------------------------------------------------------------- the RDS family

# notes §7.1c (AE schemas/RDS/src/ListJobInfo.json): enum ["Running","Completed","Failed"];
# §7.3 GeminiDB the same; §7.2 DDS gives no enum (Terraform waits Running → Completed);
# §7.4 TaurusDB adds Pending (延时任务,未执行: a delayed task not yet run), passed through.
_RDS_STATUSES: Final = MappingProxyType({"Running": RUNNING, "Completed": SUCCESS, "Failed": FAIL})
_RDS_DOCUMENTED: Final = frozenset({"Pending"})


def _rds_resources(job: Mapping[str, Any]) -> object:
    # The RDS example says entities.resource_id, the AE schema and doc resource_ids
    # (notes §7.1 "Inconsistency"): either is read.
    entities = _object(job, "entities")
    return entities.get("resource_ids", entities.get("resource_id"))


def _rds_job_check(job: Mapping[str, Any], limit: int) -> _Checked:
    mapped, raw = _status(job.get("status"), _RDS_STATUSES, "job status")
    _bounded_list(_rds_resources(job), "resource ids", limit)
    return _Checked(job, mapped, raw, ())


def _rds_progress(job: Mapping[str, Any]) -> float | None:
    # RDS and TaurusDB report progress as "process", DDS and GeminiDB as "progress"
    # (notes §7.1e, §7.2, §7.3): "60%" while running, "" otherwise.
    return _progress_percent(job.get("process", job.get("progress")))


def _rds_job_id(job: Mapping[str, Any]) -> str | None:
    return _id(job, "id")


def _rds_answer(checked: _Checked, answer_format: str, *, begin: str, end: str) -> ServiceAnswer:
    job = checked.document
    listed = _rds_resources(job)  # its length checked by _rds_job_check
    resources = (
        [item for item in listed if is_status_name(item)] if isinstance(listed, list) else []
    )
    ids = {"instance_id": _id(_object(job, "instance"), "id")}
    ids.update({f"resource_ids[{index}]": value for index, value in enumerate(resources)})
    return ServiceAnswer(
        answer_format=answer_format,
        status=checked.status,
        upstream_status=checked.upstream_status,
        job_id=_rds_job_id(job),
        job_type=_text(job, "name"),
        entities=dict(_object(job, "entities")),
        resource_ids=_ids(**ids),
        fail_reason=_text(job, "fail_reason"),
        begin_time=_text(job, begin),
        end_time=_text(job, end),
        progress=_rds_progress(job),
        documented=_RDS_DOCUMENTED,
    )


def _rds_check(body: object, job_id: str | None, limit: int) -> _Checked:
    return _rds_job_check(_envelope(body, "job"), limit)


def _rds_describe(checked: _Checked) -> ServiceAnswer:
    return _rds_answer(checked, "rds", begin="created", end="ended")


_RDS: Final = _variant(
    _rds_check, _rds_describe, _rds_job_id, progress=_rds_progress, documented=_RDS_DOCUMENTED
)


def parse_rds(
    body: object, *, job_id: str | None = None, max_sub_jobs: int = MAX_SUB_JOBS
) -> ServiceAnswer:
    """RDS, TaurusDB and DDS (notes §7.1, §7.4, §7.2: AE schemas/RDS/src/ListJobInfo.json,
    schemas/GaussDB/src/ShowGaussMySqlJobInfo.json, schemas/DDS/src/ShowJobDetail.json):
    ``{"job": {id, name, status, created, ended, process|progress, instance,
    entities, fail_reason}}``; no sub-jobs."""
    return _RDS.parse(body, job_id, max_sub_jobs)


def _rds_list_check(body: object, job_id: str | None, limit: int) -> _Checked:
    top = _top(body)
    jobs = top.get("jobs")
    if not isinstance(jobs, list):
        raise MalformedResponse("response has no 'jobs' list")
    items = [item for item in _bounded_list(jobs, "jobs", limit) if isinstance(item, dict)]
    if job_id is not None:
        items = [item for item in items if item.get("id") == job_id]
    if len(items) != 1:
        raise JobNotListed(
            f"response lists {len(items)} jobs"
            + (" with the id asked for" if job_id is not None else "")
            + ", not exactly one"
        )
    return _rds_job_check(items[0], limit)


def _rds_list_describe(checked: _Checked) -> ServiceAnswer:
    return _rds_answer(checked, "rds-list", begin="start_time", end="end_time")


_RDS_LIST: Final = _variant(
    _rds_list_check,
    _rds_list_describe,
    _rds_job_id,
    progress=_rds_progress,
    documented=_RDS_DOCUMENTED,
)


def parse_rds_list(
    body: object, *, job_id: str | None = None, max_sub_jobs: int = MAX_SUB_JOBS
) -> ServiceAnswer:
    """GeminiDB (notes §7.3: AE schemas/GaussDBforNoSQL/src/ListJobs.json): the
    list-style answer ``{"jobs": [...], "total_count": N}`` of
    ``GET /v3/{project_id}/jobs?id=``; the item whose ``id`` is ``job_id``
    (or the only item, when no ``job_id`` is given), :class:`JobNotListed` if none."""
    return _RDS_LIST.parse(body, job_id, max_sub_jobs)


# ---------------------------------------------------------------- DCS

# notes §8c (AE schemas/DCS/src/ShowJobInfo.json): enum INIT, RUNNING, SUCCESS, FAIL:
# jobwatchd's names already.


def _dcs_check(body: object, job_id: str | None, limit: int) -> _Checked:
    top = _top(body)
    mapped, raw = _status(top.get("status"), _SAME, "status")
    return _Checked(top, mapped, raw, ())


def _dcs_describe(checked: _Checked) -> ServiceAnswer:
    top = checked.document
    return ServiceAnswer(
        answer_format="dcs",
        status=checked.status,
        upstream_status=checked.upstream_status,
        job_id=_top_job_id(top),
        job_type=_text(top, "job_type"),
        fail_reason=_text(top, "fail_reason") or _text(top, "fail_resson"),
        begin_time=_text(top, "begin_time"),
        end_time=_text(top, "end_time"),
    )


_DCS: Final = _variant(_dcs_check, _dcs_describe, _top_job_id)


def parse_dcs(
    body: object, *, job_id: str | None = None, max_sub_jobs: int = MAX_SUB_JOBS
) -> ServiceAnswer:
    """DCS (notes §8: AE schemas/DCS/src/ShowJobInfo.json): a flat record
    ``{job_id, job_type, status, begin_time, end_time, fail_reason}``; times are
    epoch-millisecond strings, kept as reported; the vendor's example spells
    ``fail_resson``, which is read too."""
    return _DCS.parse(body, job_id, max_sub_jobs)


# ---------------------------------------------------------------- SFS Turbo

# notes §9c (AE schemas/SFSTurbo/src/ShowJobDetail.json): enum
# ["success","failed","waiting","running"]; waiting (等待执行) passes through. The
# sub-job field's AE example says "FAIL": jobwatchd's own names are read as such.
_SFS_TURBO_STATUSES: Final = MappingProxyType(
    {"success": SUCCESS, "running": RUNNING, "failed": FAIL}
)
_SFS_TURBO_DOCUMENTED: Final = frozenset({"waiting"})


def _sfs_turbo_check(body: object, job_id: str | None, limit: int) -> _Checked:
    top = _top(body)
    mapped, raw = _status(top.get("status"), _SFS_TURBO_STATUSES, "status")
    subs = _checked_sub_jobs(top.get("sub_jobs"), _SFS_TURBO_STATUSES, limit, _flat_sub_job)
    return _Checked(top, mapped, raw, subs)


def _sfs_turbo_describe(checked: _Checked) -> ServiceAnswer:
    top = checked.document
    return ServiceAnswer(
        answer_format="sfs-turbo",
        status=checked.status,
        upstream_status=checked.upstream_status,
        job_id=_top_job_id(top),
        job_type=_text(top, "job_type"),
        error_code=_text(top, "error_code"),
        fail_reason=_text(top, "fail_reason"),
        begin_time=_text(top, "begin_time"),
        end_time=_text(top, "end_time"),
        sub_jobs=_described_sub_jobs(checked.sub_jobs),
        sub_jobs_total=len(checked.sub_jobs) or None,
        documented=_SFS_TURBO_DOCUMENTED,
    )


_SFS_TURBO: Final = _variant(
    _sfs_turbo_check, _sfs_turbo_describe, _top_job_id, documented=_SFS_TURBO_DOCUMENTED
)


def parse_sfs_turbo(
    body: object, *, job_id: str | None = None, max_sub_jobs: int = MAX_SUB_JOBS
) -> ServiceAnswer:
    """SFS Turbo (notes §9: AE schemas/SFSTurbo/src/ShowJobDetail.json): lower-case
    ``status``, top-level ``sub_jobs[]`` (``job_id, job_type, status, begin_time,
    end_time, error_code, fail_reason``), no entities."""
    return _SFS_TURBO.parse(body, job_id, max_sub_jobs)


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


class _LazyParser:
    """Polls' parser of a variant format: a :class:`LazyAnswer`."""

    __slots__ = ("_variant",)

    def __init__(self, variant: _Variant) -> None:
        self._variant = variant

    def __call__(
        self, body: object, *, job_id: str | None = None, max_sub_jobs: int = MAX_SUB_JOBS
    ) -> JobAnswer:
        variant = self._variant
        return LazyAnswer(variant.check(body, job_id, max_sub_jobs), variant)


# ECS, EVS and EIP are the ECS document as it is, with only other resource ids
# (parse_ecs, parse_evs, parse_eip differ in nothing a poll reads): polls read
# them with cloud/ecs.py's own lazy parser.
_POLL_PARSERS: Final[Mapping[str, PollParser]] = MappingProxyType(
    {
        "ecs": _parse_ecs_shape,
        "evs": _parse_ecs_shape,
        "eip": _parse_ecs_shape,
        "ims": _LazyParser(_IMS),
        "cce": _LazyParser(_CCE),
        "elb": _LazyParser(_ELB),
        "rds": _LazyParser(_RDS),
        "rds-list": _LazyParser(_RDS_LIST),
        "dcs": _LazyParser(_DCS),
        "sfs-turbo": _LazyParser(_SFS_TURBO),
    }
)


def poll_parser(answer_format: str) -> PollParser:
    """The parser polls of ``answer_format`` use; :class:`KeyError` if unknown."""
    try:
        return _POLL_PARSERS[answer_format]
    except KeyError:
        raise KeyError(
            f"unknown answer format {answer_format!r}: known are {', '.join(FORMATS)}"
        ) from None


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
