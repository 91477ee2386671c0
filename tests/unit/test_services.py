"""The services' hosts and job URLs (jobwatchd/services.py), and AK/SK
signatures of those URLs equal to the official SDK signer's."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from jobwatchd.cloud.formats import FORMATS
from jobwatchd.services import (
    SERVICES,
    ServiceError,
    endpoint_for,
    job_url,
    service,
    url_pieces,
    validate_region,
)
from tests.helpers.signing import ours, sdk_sign

# Hosts as the reference notes on the vendor's job APIs give them (section (f) of
# each service, from the AE host and the SDK region files), and Open Telekom
# Cloud's from opentelekomcloud-docs/regions-and-endpoints doc/source/index.rst.
HOSTS: list[tuple[str, str, str]] = [
    ("ecs", "cn-north-4", "ecs.cn-north-4.myhuaweicloud.com"),
    ("ecs", "ap-southeast-1", "ecs.ap-southeast-1.myhuaweicloud.com"),
    ("ecs", "eu-west-101", "ecs.eu-west-101.myhuaweicloud.eu"),  # SDK EcsRegion
    ("ecs", "eu-de", "ecs.eu-de.otc.t-systems.com"),
    ("ecs", "eu-nl", "ecs.eu-nl.otc.t-systems.com"),
    ("evs", "cn-north-4", "evs.cn-north-4.myhuaweicloud.com"),
    ("evs", "eu-nl", "evs.eu-nl.otc.t-systems.com"),
    ("ims", "cn-north-4", "ims.cn-north-4.myhuaweicloud.com"),
    ("ims", "eu-de", "ims.eu-de.otc.t-systems.com"),
    ("bms", "cn-north-4", "bms.cn-north-4.myhuaweicloud.com"),
    ("bms", "eu-de", "ecs.eu-de.otc.t-systems.com"),  # OTC serves BMS from the ECS host
    ("vpc", "cn-north-4", "vpc.cn-north-4.myhuaweicloud.com"),
    ("vpc", "ap-southeast-1", "vpc.ap-southeast-1.myhwclouds.com"),  # SDK EipRegion
    ("vpc", "eu-de", "vpc.eu-de.otc.t-systems.com"),
    ("cce", "cn-north-4", "cce.cn-north-4.myhuaweicloud.com"),
    ("elb", "cn-north-4", "elb.cn-north-4.myhuaweicloud.com"),
    ("rds", "cn-north-1", "rds.cn-north-1.myhuaweicloud.com"),
    ("taurusdb", "cn-north-4", "gaussdb.cn-north-4.myhuaweicloud.com"),
    ("taurusdb", "tr-west-1", "gaussdbformysql.tr-west-1.myhuaweicloud.com"),  # SDK GaussDBRegion
    ("taurusdb", "ap-southeast-2", "gaussdbformysql.ap-southeast-2.myhuaweicloud.com"),
    ("dds", "ap-southeast-1", "dds.ap-southeast-1.myhuaweicloud.com"),
    ("geminidb", "cn-north-4", "gaussdb-nosql.cn-north-4.myhuaweicloud.com"),
    ("geminidb", "eu-west-101", "gaussdb-nosql.eu-west-101.myhuaweicloud.eu"),
    ("dcs", "cn-north-4", "dcs.cn-north-4.myhuaweicloud.com"),
    ("dcs", "eu-west-101", "dcs.eu-west-101.myhuaweicloud.com"),  # SDK DcsRegion: not .eu
    ("sfs-turbo", "cn-north-4", "sfs-turbo.cn-north-4.myhuaweicloud.com"),
    ("sfs-turbo", "eu-west-101", "sfs-turbo.eu-west-101.myhuaweicloud.eu"),
]


@pytest.mark.parametrize(("name", "region", "host"), HOSTS)
def test_endpoint_is_the_documented_host(name: str, region: str, host: str) -> None:
    assert endpoint_for(name, region) == URL(f"https://{host}")


def test_every_service_has_an_answer_format_and_a_host() -> None:
    assert set(SERVICES) == {
        "ecs",
        "evs",
        "ims",
        "bms",
        "vpc",
        "cce",
        "elb",
        "rds",
        "taurusdb",
        "dds",
        "geminidb",
        "dcs",
        "sfs-turbo",
    }
    for name, entry in SERVICES.items():
        assert entry.answer_format in FORMATS, name
        assert (
            endpoint_for(name, "cn-north-4").host
            == f"{entry.host_name}.cn-north-4.myhuaweicloud.com"
        )


@pytest.mark.parametrize(
    ("name", "region", "suffix", "host"),
    [
        ("ecs", "eu-de", "otc.t-systems.com", "ecs.eu-de.otc.t-systems.com"),
        ("bms", "eu-de", "otc.t-systems.com", "ecs.eu-de.otc.t-systems.com"),
        ("rds", "cn-north-4", "example.internal", "rds.cn-north-4.example.internal"),
        (
            "geminidb",
            "la-south-2",
            "myhuaweicloud.com",
            "gaussdb-nosql.la-south-2.myhuaweicloud.com",
        ),
        ("dcs", "eu-west-101", "myhuaweicloud.eu", "dcs.eu-west-101.myhuaweicloud.eu"),
    ],
)
def test_domain_suffix_replaces_the_known_one(
    name: str, region: str, suffix: str, host: str
) -> None:
    assert endpoint_for(name, region, domain_suffix=suffix) == URL(f"https://{host}")


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("https://proxy.example.com:8443/huawei/", "https://proxy.example.com:8443/huawei/"),
        ("http://127.0.0.1:20001", "http://127.0.0.1:20001"),
        (
            URL("https://ecs.cn-north-4.myhuaweicloud.com"),
            "https://ecs.cn-north-4.myhuaweicloud.com",
        ),
    ],
)
def test_override_wins(override: str | URL, expected: str) -> None:
    assert endpoint_for("cce", "cn-north-4", override=override) == URL(expected)
    assert endpoint_for("cce", "cn-north-4", domain_suffix="a.b", override=override) == URL(
        expected
    )


def test_a_bad_region_is_refused_even_with_an_override() -> None:
    with pytest.raises(ServiceError, match="is not a region id"):
        endpoint_for("ecs", "cn-north-4.evil", override="https://h.example")


@pytest.mark.parametrize(
    "region",
    [
        "",
        "CN-NORTH-4",
        "cn",
        "cn-north-4.evil.com",
        "cn-north-4/x",
        "cn north 4",
        "cn-north-4:443",
        "cn-north-4@x",
        "-cn-north-4",
        "cn--north",
        "cn-north-4-",
        "x" * 200,
        "中-north-1",
        None,
        4,
    ],
)
def test_bad_region_is_refused_naming_it(region: object) -> None:
    with pytest.raises(ServiceError, match="is not a region id"):
        validate_region(region)
    with pytest.raises(ServiceError, match="is not a region id"):
        endpoint_for("ecs", region)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "region", ["cn-north-4", "eu-de", "eu-west-101", "cn-north-2-gov-1", "me-east-1"]
)
def test_region_shapes_that_pass(region: str) -> None:
    assert validate_region(region) == region


@pytest.mark.parametrize("name", ["", "ECS", "sdrs", "ecs ", "rds/../x", None])
def test_unknown_service_is_refused_listing_the_known(name: object) -> None:
    with pytest.raises(ServiceError, match=r"unknown service .* known are ecs, evs, ims"):
        service(name)
    with pytest.raises(ServiceError, match="unknown service"):
        endpoint_for(name, "cn-north-4")  # type: ignore[arg-type]
    with pytest.raises(ServiceError, match="unknown service"):
        job_url(name, "https://h", "p", "j")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "region"),
    [("cce", "eu-de"), ("rds", "eu-nl"), ("bms", "eu-nl"), ("sfs-turbo", "eu-de")],
)
def test_otc_refuses_services_without_a_known_host(name: str, region: str) -> None:
    with pytest.raises(ServiceError, match=f"no Open Telekom Cloud host is known for the {name}"):
        endpoint_for(name, region)


def test_otc_suffix_outside_its_regions_is_refused() -> None:
    with pytest.raises(ServiceError, match="no Open Telekom Cloud host"):
        endpoint_for("ecs", "cn-north-4", domain_suffix="otc.t-systems.com")


@pytest.mark.parametrize(
    "suffix", ["", "com", ".com", "a..b", "Example.COM", "a.b/c", "a.b:80", "-a.b"]
)
def test_bad_domain_suffix_is_refused(suffix: str) -> None:
    with pytest.raises(ServiceError, match="is not a DNS name"):
        endpoint_for("ecs", "cn-north-4", domain_suffix=suffix)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("ecs.cn-north-4.myhuaweicloud.com", "absolute http"),
        ("ftp://h.example", "absolute http"),
        ("https://", "absolute http"),
        ("https://user:pw@h.example", "credentials"),
        ("https://h.example/?a=1", "a query"),
        ("https://h.example/#f", "a fragment"),
        ("https://[::1", "is not a URL"),
    ],
)
def test_bad_override_is_refused(override: str, message: str) -> None:
    with pytest.raises(ServiceError, match=message):
        endpoint_for("ecs", "cn-north-4", override=override)


# The query paths of the notes, section (a) of each service, and the AE request
# examples' ids where they give one.
PATHS: list[tuple[str, str, str, str]] = [
    (
        "ecs",
        "p1",
        "2c9eb2c5544cbf6101544f0602af2b4f",
        "/v1/p1/jobs/2c9eb2c5544cbf6101544f0602af2b4f",
    ),
    (
        "evs",
        "p1",
        "4010a32d535527910153552b492c0002",
        "/v1/p1/jobs/4010a32d535527910153552b492c0002",
    ),
    (
        "ims",
        "ac234de25c6741d2b1273da49eea1b9e",
        "ff8080814dbd65d7014dbe0d84db0013",
        "/v1/ac234de25c6741d2b1273da49eea1b9e/jobs/ff8080814dbd65d7014dbe0d84db0013",
    ),
    (
        "bms",
        "bbf1946d374b44a0a2a95533562ba954",
        "2c9eb2c5544cbf6101544f0635672b60",
        "/v1/bbf1946d374b44a0a2a95533562ba954/jobs/2c9eb2c5544cbf6101544f0635672b60",
    ),
    (
        "vpc",
        "p1",
        "ff808082843684110184e155fdb36461",
        "/v1/p1/jobs/ff808082843684110184e155fdb36461",
    ),
    (
        "cce",
        "p1",
        "354331b2c-229a-11e8-9c75-0255ac100ceb",
        "/api/v3/projects/p1/jobs/354331b2c-229a-11e8-9c75-0255ac100ceb",
    ),
    (
        "elb",
        "7b7705dce1e847b08b3b16dda67fec24",
        "37d5c1fd-fa57-4c6d-bdcd-d523095c05e8",
        "/v3/7b7705dce1e847b08b3b16dda67fec24/elb/jobs/37d5c1fd-fa57-4c6d-bdcd-d523095c05e8",
    ),
    (
        "rds",
        "054e292c9880d4992f02c0196d3ea468",
        "a9767ede-fe0f-4888-9003-e843a4c90514",
        "/v3/054e292c9880d4992f02c0196d3ea468/jobs?id=a9767ede-fe0f-4888-9003-e843a4c90514",
    ),
    ("taurusdb", "p1", "j1", "/v3/p1/jobs?id=j1"),
    (
        "dds",
        "0549b4a43100d4f32f51c01c2fe4acdb",
        "f85104b5-4a9c-4e0f-9505-fc5409d8f7ae",
        "/v3/0549b4a43100d4f32f51c01c2fe4acdb/jobs?id=f85104b5-4a9c-4e0f-9505-fc5409d8f7ae",
    ),
    (
        "geminidb",
        "p1",
        "89a0cde6-9c46-4b89-a92c-573e1083ff23",
        "/v3/p1/jobs?id=89a0cde6-9c46-4b89-a92c-573e1083ff23",
    ),
    (
        "dcs",
        "p1",
        "ff8080818822bbf70188235afc24141a",
        "/v2/p1/jobs/ff8080818822bbf70188235afc24141a",
    ),
    (
        "sfs-turbo",
        "p1",
        "26f6b565-xxxx-XXXX-xxxx-03f0bd975433",
        "/v1/p1/sfs-turbo/jobs/26f6b565-xxxx-XXXX-xxxx-03f0bd975433",
    ),
]


@pytest.mark.parametrize(("name", "project_id", "job_id", "path"), PATHS)
def test_job_url_is_the_documented_path(name: str, project_id: str, job_id: str, path: str) -> None:
    base = endpoint_for(name, "cn-north-4")
    url = job_url(name, base, project_id, job_id)
    assert str(url) == f"{base}{path}"
    # Behind a proxy's path prefix (with or without its trailing slash).
    for prefix in ("https://proxy.example/hw", "https://proxy.example/hw/"):
        assert str(job_url(name, prefix, project_id, job_id)) == f"https://proxy.example/hw{path}"


@pytest.mark.parametrize(
    ("path", "query_key"),
    [
        ("/v1/jobs/{job_id}", None),
        ("/v1/{project_id}/jobs", None),
        ("/v1/{job_id}/{project_id}", None),
        ("/v1/{project_id}/{region}/{job_id}", None),
        ("/v1/{project_id}/jobs/{job_id}", "id"),
    ],
)
def test_a_query_path_that_is_not_prefix_project_job_is_refused(
    path: str, query_key: str | None
) -> None:
    entry = dataclasses.replace(SERVICES["ecs"], path=path, query_key=query_key)
    with pytest.raises(ServiceError, match="not prefix/project/job"):
        url_pieces(entry)


def test_rds_style_url_carries_the_id_in_the_query() -> None:
    url = job_url("rds", "https://rds.cn-north-1.myhuaweicloud.com", "p1", "j-1")
    assert url.path == "/v3/p1/jobs"
    assert list(url.query.items()) == [("id", "j-1")]


@pytest.mark.parametrize("bad", ["", "a/b", "..", "a b", "a%2Fb", "a?b", "a#b", "x" * 65, "é"])
@pytest.mark.parametrize("which", ["project", "job"])
def test_job_url_refuses_ids_that_could_escape(bad: str, which: str) -> None:
    project_id, job_id = (bad, "j1") if which == "project" else ("p1", bad)
    with pytest.raises(ServiceError, match=f"{which} id .* is not"):
        job_url("rds", "https://rds.cn-north-4.myhuaweicloud.com", project_id, job_id)


def test_job_url_refuses_a_bad_base() -> None:
    with pytest.raises(ServiceError, match="absolute http"):
        job_url("ecs", "/v1", "p1", "j1")


# ------------------------------------------------- AK/SK signing, as the SDK signs


SIGNED_HEADERS: list[dict[str, str]] = [
    {},
    {"Content-Type": "application/json"},  # CCE and SFS Turbo mark it required (notes §5a, §9a)
    {"X-Language": "en-us", "X-Project-Id": "p1"},  # RDS family: optional X-Language (§7.1a)
]


OTC_FAMILY = {"ecs", "evs", "ims", "bms", "vpc"}
SIGN_CASES = [
    (name, project_id, job_id, region)
    for name, project_id, job_id, _ in PATHS
    for region in ("cn-north-4", "eu-west-101", "ap-southeast-1", "eu-de")
    if region != "eu-de" or name in OTC_FAMILY
]


@pytest.mark.parametrize(("name", "project_id", "job_id", "region"), SIGN_CASES)
@pytest.mark.parametrize("headers", SIGNED_HEADERS)
def test_signature_of_every_job_url_equals_the_sdk(
    name: str, project_id: str, job_id: str, region: str, headers: dict[str, str]
) -> None:
    base = endpoint_for(name, region)
    url = job_url(name, base, project_id, job_id)
    mine = ours("GET", url, headers, b"")
    theirs = sdk_sign("GET", url, headers, b"")
    assert mine["Authorization"] == theirs["Authorization"]
    assert mine["Host"] == theirs["Host"] == base.host


@pytest.mark.parametrize("job_id", ["a9767ede-fe0f-4888-9003-e843a4c90514", "A_b-9", "x" * 64])
def test_rds_style_query_signature_equals_the_sdk_through_a_proxy_prefix(job_id: str) -> None:
    url = job_url(
        "rds", "https://proxy.example:8443/huawei/rds", "054e292c9880d4992f02c0196d3ea468", job_id
    )
    assert url.query_string == f"id={job_id}"
    mine = ours("GET", url, {}, b"")
    assert mine["Authorization"] == sdk_sign("GET", url, {}, b"")["Authorization"]
    # The query is signed: another id gives another signature.
    other = (
        url.with_query({"id": job_id + "0"}) if len(job_id) < 64 else url.with_query({"id": "y"})
    )
    assert ours("GET", other, {}, b"")["Authorization"] != mine["Authorization"]


ids = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)


@settings(max_examples=100, deadline=None)
@given(name=st.sampled_from(sorted(SERVICES)), project_id=ids, job_id=ids)
def test_any_valid_ids_stay_in_their_place_and_sign_as_the_sdk(
    name: str, project_id: str, job_id: str
) -> None:
    url = job_url(name, endpoint_for(name, "cn-north-4"), project_id, job_id)
    segments = url.path.split("/")
    assert project_id in segments
    if SERVICES[name].query_key is None:
        assert segments[-1] == job_id
        assert not url.query_string
    else:
        assert list(url.query.items()) == [("id", job_id)]
    assert (
        ours("GET", url, {}, b"")["Authorization"] == sdk_sign("GET", url, {}, b"")["Authorization"]
    )
