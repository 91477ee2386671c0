"""AK/SK signatures by jobwatchd and by the official SDK's signer, for the same
request, credentials and date: the reference the signing tests compare with."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from huaweicloudsdkcore.sdk_request import SdkRequest  # type: ignore[import-untyped]
from huaweicloudsdkcore.signer.signer import Signer  # type: ignore[import-untyped]
from yarl import URL

from jobwatchd.cloud.signing import sign

AK = "HPUAEXAMPLEACCESSKEY1"


SK = "sk-Zq8vT1-never-in-a-log-4f0e9b"


DATE = "20260315T101112Z"


NOW = datetime(2026, 3, 15, 10, 11, 12, tzinfo=UTC)


def sdk_sign(
    method: str, url: URL, headers: dict[str, str], body: bytes, credentials: Any = None
) -> dict[str, str]:
    """The official SDK's headers for the same request and date."""
    request = SdkRequest(
        method=method,
        schema=url.scheme,
        host=url.host_port_subcomponent,
        resource_path=url.raw_path,
        query_params=list(url.query.items()),
        header_params={**headers, "X-Sdk-Date": DATE},
        body=body,
    )
    if credentials is None:
        Signer(SimpleNamespace(ak=AK, sk=SK)).sign(request)
    else:
        credentials.sign_request(request)
    return dict(request.header_params)


def ours(method: str, url: URL, headers: dict[str, str], body: bytes) -> dict[str, str]:
    return sign(method=method, url=url, headers=headers, ak=AK, sk=SK, now=NOW, body=body)
