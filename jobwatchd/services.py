"""The catalogue of Huawei Cloud services whose asynchronous jobs jobwatchd can
query: each one's host, its job query path and its answer format
(:mod:`jobwatchd.cloud.formats`). Pure, no I/O.

Sources, cited per entry as ``notes §N``: the reference notes on the vendor's
job APIs, which quote the API Explorer definitions ("AE",
``mingyang91/huawei-cloud-api-definitions`` ``schemas/<PRODUCT>/src/<Operation>.json``),
the SDK region files (``huaweicloud/huaweicloud-sdk-python-v3``) and the doc
pages named in each entry. Open Telekom Cloud hosts come from
https://github.com/opentelekomcloud-docs/regions-and-endpoints
(``doc/source/index.rst``, "Regions and Endpoints").

An account's ``region``, ``domain_suffix`` and ``endpoints`` (the config)
place each service through :func:`endpoint_for`; the upstream client queries
:func:`job_url` and reads the answer in the service's format.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from yarl import URL

from jobwatchd.validation import is_valid_id

DEFAULT_SUFFIX: Final = "myhuaweicloud.com"
EU_SOVEREIGN_SUFFIX: Final = "myhuaweicloud.eu"
OTC_SUFFIX: Final = "otc.t-systems.com"

EU_SOVEREIGN_REGIONS: Final = frozenset({"eu-west-101"})
"""Regions served under ``myhuaweicloud.eu``: the SDK region files give
``ecs.eu-west-101.myhuaweicloud.eu`` (notes §1f, ``ecs_region.py``),
``gaussdb-nosql.eu-west-101.myhuaweicloud.eu`` (notes §7.3) and
``sfs-turbo.eu-west-101.myhuaweicloud.eu`` (notes §9f); the EU doc pages'
endpoint tables say the same (e.g. https://support.huaweicloud.com/eu/api-ticket/ticket_api_00004.html:
``osm.eu-west-101.myhuaweicloud.eu``)."""

OTC_REGIONS: Final = frozenset({"eu-de", "eu-nl"})
"""Open Telekom Cloud's regions (regions-and-endpoints ``index.rst``, "Region")."""

_REGION = re.compile(r"[a-z]{2}(?:-[a-z0-9]{1,16}){1,4}")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_SUFFIX = re.compile(rf"{_LABEL}(?:\.{_LABEL})+")
MAX_REGION_LENGTH: Final = 40


class ServiceError(ValueError):
    """A service, region, endpoint or id that cannot make a job URL; the message names it."""


@dataclass(frozen=True, slots=True)
class Service:
    """One service's job query API.

    ``path`` is the query path template (``{project_id}``, ``{job_id}``);
    ``query_key``, when set, carries the job id in the query string instead
    (the RDS family's ``/v3/{project_id}/jobs?id={job_id}``). ``host_name``
    is the first label of the host (``gaussdb-nosql`` for GeminiDB),
    ``answer_format`` a key of :data:`jobwatchd.cloud.formats.FORMATS`.
    """

    name: str
    title: str
    host_name: str
    path: str
    answer_format: str
    source: str
    query_key: str | None = None
    eu_suffix: str = EU_SOVEREIGN_SUFFIX
    otc_host_name: str | None = None
    """The host's first label on Open Telekom Cloud; None: not offered there."""
    otc_regions: frozenset[str] = OTC_REGIONS
    region_hosts: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Regions whose host differs from the pattern (whole host names)."""


ECS_PATH: Final = "/v1/{project_id}/jobs/{job_id}"
"""The ECS family's job query path."""
_RDS_PATH = "/v3/{project_id}/jobs"

_CATALOGUE: tuple[Service, ...] = (
    # notes §1: AE schemas/ECS/src/ShowJob.json; SDK ecs_region.py; doc ecs_02_0901.
    Service(
        "ecs",
        "Elastic Cloud Server",
        "ecs",
        ECS_PATH,
        "ecs",
        "AE schemas/ECS/src/ShowJob.json",
        otc_host_name="ecs",
    ),
    # notes §2: AE schemas/EVS/src/ShowJob.json; doc evs_04_0054.
    Service(
        "evs",
        "Elastic Volume Service",
        "evs",
        ECS_PATH,
        "evs",
        "AE schemas/EVS/src/ShowJob.json",
        otc_host_name="evs",
    ),
    # notes §3: AE schemas/IMS/src/ShowJob.json; doc ims_03_0905. The project-scoped
    # path (deprecated in the intl doc ims_03_0905_1, still in the zh doc) answers
    # in the ECS family's shape; /v1/cloudimages/job/{job_id} has no example.
    Service(
        "ims",
        "Image Management Service",
        "ims",
        ECS_PATH,
        "ims",
        "AE schemas/IMS/src/ShowJob.json",
        otc_host_name="ims",
    ),
    # notes §4a: AE schemas/BMS/src/ShowJobInfos.json; doc bms_api_0640. On Open
    # Telekom Cloud the BMS API is served by ecs.eu-de (regions-and-endpoints
    # index.rst, "Bare Metal Server": eu-de only).
    Service(
        "bms",
        "Bare Metal Server",
        "bms",
        ECS_PATH,
        "ecs",
        "AE schemas/BMS/src/ShowJobInfos.json",
        otc_host_name="ecs",
        otc_regions=frozenset({"eu-de"}),
    ),
    # notes §4b: AE schemas/EIP/src/ShowResourcesJobDetail.json, served from the VPC
    # host; SDK EipRegion has vpc.ap-southeast-1.myhwclouds.com. OTC: "Elastic IP".
    Service(
        "vpc",
        "Virtual Private Cloud (Elastic IP jobs)",
        "vpc",
        ECS_PATH,
        "eip",
        "AE schemas/EIP/src/ShowResourcesJobDetail.json",
        otc_host_name="vpc",
        region_hosts=MappingProxyType({"ap-southeast-1": "vpc.ap-southeast-1.myhwclouds.com"}),
    ),
    # notes §5: AE schemas/CCE/src/ShowJob.json; SDK CCE client resource_path.
    Service(
        "cce",
        "Cloud Container Engine",
        "cce",
        "/api/v3/projects/{project_id}/jobs/{job_id}",
        "cce",
        "AE schemas/CCE/src/ShowJob.json",
    ),
    # notes §6: AE schemas/ELB/src/ShowJob.json; https://support.huaweicloud.com/api-elb/ShowJob.html.
    Service(
        "elb",
        "Elastic Load Balance (v3)",
        "elb",
        "/v3/{project_id}/elb/jobs/{job_id}",
        "elb",
        "AE schemas/ELB/src/ShowJob.json",
    ),
    # notes §7.1: AE schemas/RDS/src/ListJobInfo.json; doc rds_08_0001.
    Service(
        "rds",
        "Relational Database Service",
        "rds",
        _RDS_PATH,
        "rds",
        "AE schemas/RDS/src/ListJobInfo.json",
        query_key="id",
    ),
    # notes §7.4: AE schemas/GaussDB/src/ShowGaussMySqlJobInfo.json; the SDK
    # GaussDBRegion uses gaussdbformysql.{region} for three regions.
    Service(
        "taurusdb",
        "TaurusDB (GaussDB for MySQL)",
        "gaussdb",
        _RDS_PATH,
        "rds",
        "AE schemas/GaussDB/src/ShowGaussMySqlJobInfo.json",
        query_key="id",
        region_hosts=MappingProxyType(
            {
                region: f"gaussdbformysql.{region}.{DEFAULT_SUFFIX}"
                for region in ("tr-west-1", "ap-southeast-1", "ap-southeast-2")
            }
        ),
    ),
    # notes §7.2: AE schemas/DDS/src/ShowJobDetail.json.
    Service(
        "dds",
        "Document Database Service",
        "dds",
        _RDS_PATH,
        "rds",
        "AE schemas/DDS/src/ShowJobDetail.json",
        query_key="id",
    ),
    # notes §7.3: AE schemas/GaussDBforNoSQL/src/ListJobs.json; doc nosql_10_0100;
    # SDK GaussDBforNoSQLRegion.
    Service(
        "geminidb",
        "GeminiDB (GaussDB NoSQL)",
        "gaussdb-nosql",
        _RDS_PATH,
        "rds-list",
        "AE schemas/GaussDBforNoSQL/src/ListJobs.json",
        query_key="id",
    ),
    # notes §8: AE schemas/DCS/src/ShowJobInfo.json; the SDK dcs_region.py entry for
    # eu-west-101 is dcs.eu-west-101.myhuaweicloud.com (not .eu).
    Service(
        "dcs",
        "Distributed Cache Service",
        "dcs",
        "/v2/{project_id}/jobs/{job_id}",
        "dcs",
        "AE schemas/DCS/src/ShowJobInfo.json",
        eu_suffix=DEFAULT_SUFFIX,
    ),
    # notes §9: AE schemas/SFSTurbo/src/ShowJobDetail.json; SDK sfsturbo_region.py.
    Service(
        "sfs-turbo",
        "SFS Turbo",
        "sfs-turbo",
        "/v1/{project_id}/sfs-turbo/jobs/{job_id}",
        "sfs-turbo",
        "AE schemas/SFSTurbo/src/ShowJobDetail.json",
    ),
)

SERVICES: Mapping[str, Service] = MappingProxyType({s.name: s for s in _CATALOGUE})
"""Every known service by name."""


def service(name: object) -> Service:
    """The catalogue entry for ``name``; :class:`ServiceError` naming the known ones if none."""
    if isinstance(name, str) and name in SERVICES:
        return SERVICES[name]
    shown = repr(name)[:80]
    raise ServiceError(f"unknown service {shown}: known are {', '.join(SERVICES)}")


def validate_region(region: object) -> str:
    """``region`` if it is shaped like a region id (``cn-north-4``, ``eu-de``), else
    :class:`ServiceError`: it becomes a host label, so no dots, slashes or capitals."""
    if (
        isinstance(region, str)
        and len(region) <= MAX_REGION_LENGTH
        and _REGION.fullmatch(region) is not None
    ):
        return region
    shown = repr(region)[:80]
    raise ServiceError(
        f"region {shown} is not a region id (lower-case letters, digits and '-', "
        "like cn-north-4 or eu-de)"
    )


def validate_suffix(suffix: str) -> str:
    """``suffix`` if it is a DNS name (``otc.t-systems.com``), else :class:`ServiceError`."""
    if len(suffix) <= 200 and _SUFFIX.fullmatch(suffix) is not None:
        return suffix
    raise ServiceError(
        f"domain suffix {suffix[:80]!r} is not a DNS name (lower-case labels joined by '.')"
    )


def _validate_override(override: str | URL) -> URL:
    try:
        url = override if isinstance(override, URL) else URL(override)
    except (TypeError, ValueError) as exc:
        raise ServiceError(f"endpoint {str(override)[:80]!r} is not a URL: {exc}") from exc
    if url.scheme not in {"https", "http"} or not url.host:
        raise ServiceError(
            f"endpoint {str(override)[:80]!r} must be an absolute http(s) URL with a host"
        )
    if url.user is not None or url.password is not None or url.query_string or url.fragment:
        raise ServiceError(
            f"endpoint {str(override)[:80]!r} must not carry credentials, a query or a fragment"
        )
    return url


def _not_on_otc(entry: Service, region: str) -> ServiceError:
    offered = ", ".join(s.name for s in _CATALOGUE if region in s.otc_regions and s.otc_host_name)
    return ServiceError(
        f"no Open Telekom Cloud host is known for the {entry.name} job API in {region}"
        f" (known there: {offered or 'none'})"
    )


def endpoint_for(
    name: str,
    region: str,
    *,
    domain_suffix: str | None = None,
    override: str | URL | None = None,
) -> URL:
    """The base URL of ``name``'s API in ``region``.

    ``override`` (a whole endpoint: a proxy, a simulator) wins, after checks
    (the region is still checked, so a bad one is never silently ignored);
    then ``domain_suffix`` (e.g. ``otc.t-systems.com``, or a private DNS zone);
    else the service's known host for the region: the vendor's pattern
    ``{service}.{region}.myhuaweicloud.com``, ``.myhuaweicloud.eu`` in the EU
    sovereign regions, Open Telekom Cloud's ``{service}.{region}.otc.t-systems.com``
    in its regions for the services it offers there, and the few hosts the SDK
    region files spell differently. Raises :class:`ServiceError`.
    """
    entry = service(name)
    region = validate_region(region)
    if override is not None:
        return _validate_override(override)
    if domain_suffix is not None:
        suffix = validate_suffix(domain_suffix)
        host_name = entry.otc_host_name if suffix == OTC_SUFFIX else None
        if suffix == OTC_SUFFIX and (host_name is None or region not in entry.otc_regions):
            raise _not_on_otc(entry, region)
        return URL.build(scheme="https", host=f"{host_name or entry.host_name}.{region}.{suffix}")
    if region in OTC_REGIONS:
        if entry.otc_host_name is None or region not in entry.otc_regions:
            raise _not_on_otc(entry, region)
        return URL.build(scheme="https", host=f"{entry.otc_host_name}.{region}.{OTC_SUFFIX}")
    if region in entry.region_hosts:
        return URL.build(scheme="https", host=entry.region_hosts[region])
    suffix = entry.eu_suffix if region in EU_SOVEREIGN_REGIONS else DEFAULT_SUFFIX
    return URL.build(scheme="https", host=f"{entry.host_name}.{region}.{suffix}")


def url_pieces(entry: Service) -> tuple[str, str, str]:
    """``(a, b, c)`` such that ``a + project_id + b + job_id + c`` is ``entry``'s
    query path and query string for valid ids (polls join strings, which is
    cheaper than formatting a template each time)."""
    template = entry.path
    if entry.query_key is not None:
        template = f"{template}?{entry.query_key}={{job_id}}"
    before, project, rest = template.partition("{project_id}")
    between, job, after = rest.partition("{job_id}")
    if not project or not job or "{" in before + between + after:
        raise ServiceError(f"{entry.name}'s query path {template!r} is not prefix/project/job")
    return before, between, after


def job_url(name: str, base: str | URL, project_id: str, job_id: str) -> URL:
    """The URL that queries job ``job_id`` of ``project_id`` on ``name``'s API at ``base``.

    ``base`` may carry a path prefix (a proxy's); ids must be
    ``[A-Za-z0-9_-]{1,64}`` (as the API accepts them), so none can leave its
    path segment or query value. Raises :class:`ServiceError`.
    """
    entry = service(name)
    root = _validate_override(base)
    if not is_valid_id(project_id):
        raise ServiceError(f"project id {str(project_id)[:80]!r} is not [A-Za-z0-9_-]{{1,64}}")
    if not is_valid_id(job_id):
        raise ServiceError(f"job id {str(job_id)[:80]!r} is not [A-Za-z0-9_-]{{1,64}}")
    before, between, after = url_pieces(entry)
    # Validated ids need no quoting; the base's own path is kept as encoded.
    base_url = str(root.with_query(None)).rstrip("/")
    return URL(f"{base_url}{before}{project_id}{between}{job_id}{after}", encoded=True)
