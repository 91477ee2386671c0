"""The services' answer formats (jobwatchd/cloud/formats.py): the vendor's own
example answers, quoted verbatim from the reference notes on the vendor's job
APIs with their sources, parsed into the expected snapshots; status mapping;
hostile variants; the answers driving the state machine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from jobwatchd.cloud.client import classify
from jobwatchd.cloud.ecs import MAX_SUB_JOBS, JobResponse
from jobwatchd.cloud.formats import (
    FORMATS,
    JobNotListed,
    LazyAnswer,
    MalformedResponse,
    ServiceAnswer,
    TooManySubJobs,
    parse_answer,
    poll_parser,
)
from jobwatchd.models import (
    FAIL,
    INIT,
    MAX_TEXT_LENGTH,
    RUNNING,
    SUCCESS,
    is_terminal,
    upstream_status,
)
from jobwatchd.outcome import JOB_ID_MISMATCH_CODE, OutcomeKind
from jobwatchd.policy import parse_time
from jobwatchd.services import SERVICES
from jobwatchd.statemachine import JobAnswer, Snapshot, observe
from tests.helpers.vendor import VENDOR_EXAMPLE_BYTES

# ------------------------------------------------------------ the vendor's examples

# notes §1(b): AE schemas/ECS/src/ShowJob.json (keys sorted by the mirror)
ECS_AE = b"""
{
  "begin_time": "2016-04-25T20:04:34.604Z",
  "end_time": "2016-04-25T20:08:41.593Z",
  "entities": {
    "sub_jobs": [
      {
        "begin_time": "2016-04-25T20:04:47.591Z",
        "end_time": "2016-04-25T20:08:21.328Z",
        "entities": {
          "server_id": "bae51750-0089-41a1-9b18-5c777978ff6d"
        },
        "error_code": null,
        "fail_reason": null,
        "job_id": "2c9eb2c5544cbf6101544f0635672b60",
        "job_type": "createSingleServer",
        "status": "SUCCESS"
      }
    ],
    "sub_jobs_total": 1
  },
  "error_code": null,
  "fail_reason": null,
  "job_id": "2c9eb2c5544cbf6101544f0602af2b4f",
  "job_type": "createServer",
  "status": "SUCCESS"
}
"""

# notes §1(b): doc ecs_02_0901 as copied by
# huaweicloud.com/guide/productsdesc-bms_7d843421a5ba021783739a320f7ae0e5support1_d
# ("SUC CES S" normalised to SUCCESS)
ECS_DOC = VENDOR_EXAMPLE_BYTES  # the same text as the seed reference's example

# notes §2(b): AE schemas/EVS/src/ShowJob.json
EVS_AE = b"""
{
  "begin_time": "2016-03-08T07:40:13.219Z",
  "end_time": "",
  "entities": {
    "volume_id": "bdf1bb37-f20f-4266-9a04-f43e0a127376"
  },
  "error_code": null,
  "fail_reason": null,
  "job_id": "4010a32d535527910153552b492c0002",
  "job_type": "createVolume",
  "status": "RUNNING"
}
"""

# notes §3(b): doc ims_03_0905 "响应示例" as copied by
# huaweicloud.com/guide/productsdesc-bms_09d668269b47b95444a6dc6ff90e6606support1
# ("SUC CES S" normalised to SUCCESS)
IMS_BY_INSTANCE = b"""
{
    "job_id": "9a175ac792fa12d20193002100dd2762",
    "job_type": "imsCreateImageByInstance",
    "begin_time": "2024-11-06T06:19:43.195Z",
    "end_time": "2024-11-06T06:23:25.158Z",
    "status": "SUCCESS",
    "error_code": null,
    "fail_reason": null,
    "entities": {
        "image_name": "test",
        "image_id": "3f7185de-b59a-4bb8-aa1d-7a513528b0e9"
    }
}
"""

# notes §3(b): doc ims_03_0905 "响应示例" via the huaweicloud.com/guide copies
IMS_IMPORT = b"""
{
    "job_id": "9a175ac892fa1342019300224f22218e",
    "job_type": "imsImportImageJob",
    "begin_time": "2024-11-06T06:21:08.769Z",
    "end_time": "2024-11-06T06:27:03.742Z",
    "status": "SUCCESS",
    "error_code": null,
    "fail_reason": null,
    "entities": {
        "image_name": "test",
        "image_id": "431df7fd-a898-4dc0-86b1-22cfefb8a517"
    }
}
"""

# notes §3(b): doc ims_03_0905 "响应示例" via the huaweicloud.com/guide copies
IMS_IMPORT_OVA = b"""
{
    "job_id": "9a175ac892fa13420193006a49173317",
    "job_type": "imsImportOvaImageJob",
    "begin_time": "2024-11-06T07:39:45.814Z",
    "end_time": "2024-11-06T07:49:45.814Z",
    "status": "SUCCESS",
    "error_code": null,
    "fail_reason": null,
    "entities": {
        "sub_jobs_result": [
            {
                "job_id": "9a175ac892fa13420193006c29e133f0",
                "job_type": "imsImportImageJob",
                "begin_time": "2024-11-06T07:41:48.896Z",
                "end_time": "2024-11-06T07:49:45.814Z",
                "status": "SUCCESS",
                "error_code": null,
                "fail_reason": null,
                "entities": {
                    "image_name": "test",
                    "image_id": "fc496c19-40c2-4220-8b1a-eba9d53fca7b"
                }
            }
        ],
        "sub_jobs_list": [
            "9a175ac892fa13420193006c29e133f0"
        ]
    }
}
"""

# notes §4a: AE schemas/BMS/src/ShowJobInfos.json
BMS_AE = b"""
{
  "begin_time": "2019-04-25T20:04:34.604Z",
  "end_time": "2019-04-25T20:08:41.593Z",
  "entities": {
    "sub_jobs": [
      {
        "begin_time": "2019-04-25T20:04:47.591Z",
        "end_time": "2019-04-25T20:08:21.328Z",
        "entities": {
          "server_id": "bae51750-0089-41a1-9b18-5c777978ff6d"
        },
        "error_code": null,
        "fail_reason": null,
        "job_id": "2c9eb2c5544cbf6101544f0635672b60",
        "job_type": "baremetalSingleCreate",
        "status": "SUCCESS"
      }
    ],
    "sub_jobs_total": 1
  },
  "error_code": null,
  "fail_reason": null,
  "job_id": "2c9eb2c5544cbf6101544f0602af2b4f",
  "job_type": "baremetalBatchCreate",
  "status": "SUCCESS"
}
"""

# notes §4b: https://support.huaweicloud.com/eu/api-eip/ShowResourcesJobDetail.html
# (the same content as AE schemas/EIP/src/ShowResourcesJobDetail.json)
EIP_DOC = b"""
{
  "job_id" : "ff808082843684110184e155fdb36461",
  "job_type" : "createBatchPublicip",
  "begin_time" : "2022-12-05T08:10:19.951Z",
  "end_time" : "2022-12-05T08:10:21.864Z",
  "status" : "SUCCESS",
  "error_code" : null,
  "fail_reason" : null,
  "entities" : {
    "sub_jobs" : [ ]
  }
}
"""

# notes §5(b): AE schemas/CCE/src/ShowJob.json
CCE_AE = b"""
{
  "apiVersion": "v3",
  "kind": "Job",
  "metadata": {
    "creationTimestamp": "2018-08-02 08:12:40.672772389 +0000 UTC",
    "uid": "354331b2c-229a-11e8-9c75-0255ac100ceb",
    "updateTimestamp": "2018-08-02 08:21:50.478108569 +0000 UTC"
  },
  "spec": {
    "clusterUID": "4d1ecb2c-229a-11e8-9c75-0255ac100ceb",
    "extendParam": {
      "serverID": "bc467e3a-2338-11e8-825b-0255ac100c13"
    },
    "resourceID": "6f4dcb2c-229a-11e8-9c75-0255ac100ceb",
    "resourceName": "cluster-name",
    "subJobs": [
      {
        "apiVersion": "v3",
        "kind": "Job",
        "metadata": {
          "creationTimestamp": "2018-08-02 03:52:34.615819618 +0000 UTC",
          "uid": "fd474fab-9606-11e8-baa9-0255ac10215d",
          "updateTimestamp": "2018-08-02 04:05:29.196243031 +0000 UTC"
        },
        "spec": {
          "clusterUID": "fcc72de0-9606-11e8-baa8-0255ac10215d",
          "extendParam": {
            "serverID": "fd3b4ac0-9606-11e8-baa8-0255ac10215d"
          },
          "resourceID": "fd3b4ac0-9606-11e8-baa8-0255ac10215d",
          "type": "InstallMaster"
        },
        "status": {
          "phase": "Success"
        }
      },
      {
        "apiVersion": "v3",
        "kind": "Job",
        "metadata": {
          "creationTimestamp": "2018-08-02 03:52:33.859150791 +0000 UTC",
          "uid": "fd474f82-9606-11e8-baa8-0255ac10215d",
          "updateTimestamp": "2018-08-02 03:52:34.615655429 +0000 UTC"
        },
        "spec": {
          "clusterUID": "fcc72de0-9606-11e8-baa8-0255ac10215d",
          "type": "CreatePSMCert"
        },
        "status": {
          "phase": "Success"
        }
      }
    ],
    "type": "CreateCluster"
  },
  "status": {
    "phase": "Running",
    "reason": ""
  }
}
"""

# notes §6(b): AE schemas/ELB/src/ShowJob.json
ELB_AE = b"""
{
  "job": {
    "begin_time": "2024-03-23T08:20:42Z",
    "end_time": "2024-03-23T08:49:11Z",
    "error_code": "",
    "error_msg": "",
    "job_id": "ef6da45b-35d9-4c18-8c35-0b80d94ab9e6",
    "job_type": "UPGRADE",
    "project_id": "7b7705dce1e847b08b3b16dda67fec24",
    "resource_id": "9f5b432c-987e-4777-a1bc-6642be4b2b50",
    "status": "COMPLETE",
    "sub_jobs": [
      {
        "begin_time": "2024-03-23T08:47:11Z",
        "end_time": "2024-03-23T08:47:11Z",
        "entities": [
          {
            "resource_id": "9f5b432c-987e-4777-a1bc-6642be4b2b50",
            "resource_type": "loadbalancer"
          }
        ],
        "error_code": "",
        "error_msg": "",
        "job_id": "481a5ab3-b3ff-46fa-b074-d3b8e09ab9cb",
        "job_type": "UPGRADE_TRAFFIC_SWITCH",
        "project_id": "7b7705dce1e847b08b3b16dda67fec24",
        "resource_id": "9f5b432c-987e-4777-a1bc-6642be4b2b50",
        "status": "SUCCESS"
      },
      {
        "begin_time": "2024-03-23T08:20:42Z",
        "end_time": "2024-03-23T08:46:44Z",
        "entities": [
          {
            "resource_id": "9f5b432c-987e-4777-a1bc-6642be4b2b50",
            "resource_type": "loadbalancer"
          }
        ],
        "error_code": "",
        "error_msg": "",
        "job_id": "c4cf4e5b-fa53-427d-ad43-497e7a876c2e",
        "job_type": "UPGRADE_INIT",
        "project_id": "7b7705dce1e847b08b3b16dda67fec24",
        "resource_id": "9f5b432c-987e-4777-a1bc-6642be4b2b50",
        "status": "SUCCESS"
      },
      {
        "begin_time": "2024-03-23T08:49:11Z",
        "end_time": "2024-03-23T08:49:11Z",
        "entities": [
          {
            "resource_id": "9f5b432c-987e-4777-a1bc-6642be4b2b50",
            "resource_type": "loadbalancer"
          }
        ],
        "error_code": "",
        "error_msg": "",
        "job_id": "ee56e027-5d52-4bd9-abba-9821a742a466",
        "job_type": "UPGRADE_COMPLETE",
        "project_id": "7b7705dce1e847b08b3b16dda67fec24",
        "resource_id": "9f5b432c-987e-4777-a1bc-6642be4b2b50",
        "status": "SUCCESS"
      }
    ]
  },
  "request_id": "39551f69-3c49-4200-8ad3-73f9a8b4a3e4"
}
"""

# notes §7.1(b): AE schemas/RDS/src/ListJobInfo.json
RDS_AE = b"""
{
  "job": {
    "created": "2018-08-06T10:41:14+0800",
    "ended": "2018-08-06T16:41:14+0000",
    "entities": {
      "instance": {
        "datastore": {
          "type": "mysql",
          "version": "5.7"
        },
        "endpoint": "192.168.1.203:3306",
        "type": "Single"
      },
      "resource_id": [
        "a48e43ff268f4c0e879652d65e63d0fbin01.vm",
        "a48e43ff268f4c0e879652d65e63d0fbin01.volume"
      ]
    },
    "id": "31b8ae23-c687-4d80-b7b4-42a66c9bb886",
    "instance": {
      "id": "a48e43ff268f4c0e879652d65e63d0fbin01",
      "name": "DO-NOT-TOUCH-mgr2-mysql-single"
    },
    "name": "CreateMysqlSingleHAInstance",
    "process": "",
    "status": "Completed"
  }
}
"""

# notes §7.2: AE schemas/DDS/src/ShowJobDetail.json
DDS_AE = b"""
{
  "job": {
    "created": "2021-07-12T09:22:04+0000",
    "ended": "2021-07-12T10:10:13+0000",
    "fail_reason": null,
    "id": "f85104b5-4a9c-4e0f-9505-fc5409d8f7ae",
    "instance": {
      "id": "d87f5b33049144ec95f0cab0a5f22cfbin02",
      "name": "dds-5ff4"
    },
    "name": "Create_MongoDB",
    "progress": "100%",
    "status": "Completed"
  }
}
"""

# notes §7.3: AE schemas/GaussDBforNoSQL/src/ListJobs.json
GEMINIDB_AE = b"""
{
  "jobs": [
    {
      "end_time": "2023-09-12T06:44:03+0000",
      "fail_reason": "",
      "id": "6f85e061-04dd-42e7-86d6-d3b1e40aac2e",
      "instance": {
        "id": "27a045b6bf9e46f691f81366d398cb04in06",
        "name": "nosql-12f5"
      },
      "name": "CreateCassandra",
      "progress": "14%",
      "start_time": "2023-09-12T06:44:01+0000",
      "status": "Running"
    }
  ],
  "total_count": 1
}
"""

# notes §7.4: AE schemas/GaussDB/src/ShowGaussMySqlJobInfo.json
TAURUSDB_AE = b"""
{
  "job": {
    "created": "2018-08-06T10:41:14+0800",
    "ended": "2018-08-06T16:41:14+0000",
    "entities": {
      "instance": {
        "datastore": {
          "type": "gaussdb-mysql",
          "version": "8.0"
        },
        "endpoint": "192.168.1.203:3306",
        "type": "Cluster"
      },
      "resource_ids": [
        "a48e43ff268f4c0e879652d65e63d0fbin07.vm",
        "a48e43ff268f4c0e879652d65e63d0fbin07.volume"
      ]
    },
    "id": "31b8ae23-c687-4d80-b7b4-42a66c9bb886",
    "instance": {
      "id": "a48e43ff268f4c0e879652d65e63d0fbin07",
      "name": "DO-NOT-TOUCH-mgr2-mysql-single"
    },
    "name": "CreateGaussDBforMySQLInstance",
    "process": "",
    "status": "Completed"
  }
}
"""

# notes §8(b): AE schemas/DCS/src/ShowJobInfo.json (the vendor's typo fail_resson kept)
DCS_AE = b"""
{
  "begin_time": "1684191545379",
  "end_time": "1684191548248",
  "fail_resson": null,
  "job_id": "ff8080818822bbf70188235afc24141a",
  "job_type": "masterStandbySwapJob",
  "status": "SUCCESS"
}
"""

# notes §9(b): AE schemas/SFSTurbo/src/ShowJobDetail.json
SFS_TURBO_AE = b"""
{
  "begin_time": "2023-07-26 09:33:58",
  "end_time": "2023-07-26 09:33:58",
  "job_id": "26f6b565-xxxx-XXXX-xxxx-03f0bd975433",
  "job_type": "bind_ldap",
  "status": "success"
}
"""

# ------------------------------------------------------------ snapshots


def snapshot(answer: ServiceAnswer) -> dict[str, Any]:
    """What an answer says, as a plain dict to compare."""
    return {
        "format": answer.answer_format,
        "status": answer.status,
        "upstream_status": answer.upstream_status,
        "terminal": answer.terminal,
        "job_id": answer.job_id,
        "job_type": answer.job_type,
        "resource_ids": dict(answer.resource_ids),
        "error_code": answer.error_code,
        "fail_reason": answer.fail_reason,
        "begin_time": answer.begin_time,
        "end_time": answer.end_time,
        "progress": answer.progress,
        "sub_jobs_total": answer.sub_jobs_total,
        "sub_jobs": [
            (sub.job_id, sub.status, sub.upstream_status, sub.job_type) for sub in answer.sub_jobs
        ],
        "done": (answer.sub_jobs_done, answer.sub_jobs_succeeded, answer.sub_jobs_failed),
        "unexpected": sorted(answer.unexpected_statuses),
    }


def expected(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "terminal": False,
        "job_id": None,
        "job_type": None,
        "resource_ids": {},
        "error_code": None,
        "fail_reason": None,
        "begin_time": None,
        "end_time": None,
        "progress": None,
        "sub_jobs_total": None,
        "sub_jobs": [],
        "done": (0, 0, 0),
        "unexpected": [],
    }
    base["upstream_status"] = fields.get("status")
    return {**base, **fields}


ECS_SNAPSHOT = expected(
    format="ecs",
    status=SUCCESS,
    terminal=True,
    job_id="2c9eb2c5544cbf6101544f0602af2b4f",
    job_type="createServer",
    begin_time="2016-04-25T20:04:34.604Z",
    end_time="2016-04-25T20:08:41.593Z",
    sub_jobs_total=1,
    sub_jobs=[("2c9eb2c5544cbf6101544f0635672b60", SUCCESS, "SUCCESS", "createSingleServer")],
    done=(1, 1, 0),
)
IMS_IMPORT_SNAPSHOT = expected(
    format="ims",
    status=SUCCESS,
    terminal=True,
    job_id="9a175ac892fa1342019300224f22218e",
    job_type="imsImportImageJob",
    resource_ids={"image_id": "431df7fd-a898-4dc0-86b1-22cfefb8a517"},
    begin_time="2024-11-06T06:21:08.769Z",
    end_time="2024-11-06T06:27:03.742Z",
)

EXAMPLES: list[tuple[str, str, bytes, str | None, dict[str, Any]]] = [
    ("ecs AE", "ecs", ECS_AE, None, ECS_SNAPSHOT),
    ("ecs doc", "ecs", ECS_DOC, None, ECS_SNAPSHOT),
    (
        "evs AE",
        "evs",
        EVS_AE,
        None,
        expected(
            format="evs",
            status=RUNNING,
            job_id="4010a32d535527910153552b492c0002",
            job_type="createVolume",
            resource_ids={"volume_id": "bdf1bb37-f20f-4266-9a04-f43e0a127376"},
            begin_time="2016-03-08T07:40:13.219Z",
        ),
    ),
    (
        "ims by instance",
        "ims",
        IMS_BY_INSTANCE,
        None,
        {
            **IMS_IMPORT_SNAPSHOT,
            "job_id": "9a175ac792fa12d20193002100dd2762",
            "job_type": "imsCreateImageByInstance",
            "resource_ids": {"image_id": "3f7185de-b59a-4bb8-aa1d-7a513528b0e9"},
            "begin_time": "2024-11-06T06:19:43.195Z",
            "end_time": "2024-11-06T06:23:25.158Z",
        },
    ),
    ("ims import", "ims", IMS_IMPORT, None, IMS_IMPORT_SNAPSHOT),
    (
        "ims import ova",
        "ims",
        IMS_IMPORT_OVA,
        None,
        expected(
            format="ims",
            status=SUCCESS,
            terminal=True,
            job_id="9a175ac892fa13420193006a49173317",
            job_type="imsImportOvaImageJob",
            begin_time="2024-11-06T07:39:45.814Z",
            end_time="2024-11-06T07:49:45.814Z",
            sub_jobs_total=1,
            sub_jobs=[
                ("9a175ac892fa13420193006c29e133f0", SUCCESS, "SUCCESS", "imsImportImageJob")
            ],
            done=(1, 1, 0),
        ),
    ),
    (
        "bms AE",
        "ecs",
        BMS_AE,
        None,
        {
            **ECS_SNAPSHOT,
            "job_type": "baremetalBatchCreate",
            "begin_time": "2019-04-25T20:04:34.604Z",
            "end_time": "2019-04-25T20:08:41.593Z",
            "sub_jobs": [
                ("2c9eb2c5544cbf6101544f0635672b60", SUCCESS, "SUCCESS", "baremetalSingleCreate")
            ],
        },
    ),
    (
        "eip doc",
        "eip",
        EIP_DOC,
        None,
        expected(
            format="eip",
            status=SUCCESS,
            terminal=True,
            job_id="ff808082843684110184e155fdb36461",
            job_type="createBatchPublicip",
            begin_time="2022-12-05T08:10:19.951Z",
            end_time="2022-12-05T08:10:21.864Z",
        ),
    ),
    (
        "cce AE",
        "cce",
        CCE_AE,
        None,
        expected(
            format="cce",
            status=RUNNING,
            upstream_status="Running",
            job_id="354331b2c-229a-11e8-9c75-0255ac100ceb",
            job_type="CreateCluster",
            resource_ids={
                "resourceID": "6f4dcb2c-229a-11e8-9c75-0255ac100ceb",
                "clusterUID": "4d1ecb2c-229a-11e8-9c75-0255ac100ceb",
                "serverID": "bc467e3a-2338-11e8-825b-0255ac100c13",
            },
            begin_time="2018-08-02 08:12:40.672772389 +0000 UTC",
            sub_jobs_total=2,
            sub_jobs=[
                ("fd474fab-9606-11e8-baa9-0255ac10215d", SUCCESS, "Success", "InstallMaster"),
                ("fd474f82-9606-11e8-baa8-0255ac10215d", SUCCESS, "Success", "CreatePSMCert"),
            ],
            done=(2, 2, 0),
        ),
    ),
    (
        "elb AE",
        "elb",
        ELB_AE,
        None,
        expected(
            format="elb",
            status=SUCCESS,
            upstream_status="COMPLETE",
            terminal=True,
            job_id="ef6da45b-35d9-4c18-8c35-0b80d94ab9e6",
            job_type="UPGRADE",
            resource_ids={"resource_id": "9f5b432c-987e-4777-a1bc-6642be4b2b50"},
            begin_time="2024-03-23T08:20:42Z",
            end_time="2024-03-23T08:49:11Z",
            sub_jobs_total=3,
            sub_jobs=[
                (
                    "481a5ab3-b3ff-46fa-b074-d3b8e09ab9cb",
                    SUCCESS,
                    "SUCCESS",
                    "UPGRADE_TRAFFIC_SWITCH",
                ),
                ("c4cf4e5b-fa53-427d-ad43-497e7a876c2e", SUCCESS, "SUCCESS", "UPGRADE_INIT"),
                ("ee56e027-5d52-4bd9-abba-9821a742a466", SUCCESS, "SUCCESS", "UPGRADE_COMPLETE"),
            ],
            done=(3, 3, 0),
        ),
    ),
    (
        "rds AE",
        "rds",
        RDS_AE,
        None,
        expected(
            format="rds",
            status=SUCCESS,
            upstream_status="Completed",
            terminal=True,
            job_id="31b8ae23-c687-4d80-b7b4-42a66c9bb886",
            job_type="CreateMysqlSingleHAInstance",
            resource_ids={
                "instance_id": "a48e43ff268f4c0e879652d65e63d0fbin01",
                "resource_ids[0]": "a48e43ff268f4c0e879652d65e63d0fbin01.vm",
                "resource_ids[1]": "a48e43ff268f4c0e879652d65e63d0fbin01.volume",
            },
            begin_time="2018-08-06T10:41:14+0800",
            end_time="2018-08-06T16:41:14+0000",
        ),
    ),
    (
        "dds AE",
        "rds",
        DDS_AE,
        None,
        expected(
            format="rds",
            status=SUCCESS,
            upstream_status="Completed",
            terminal=True,
            job_id="f85104b5-4a9c-4e0f-9505-fc5409d8f7ae",
            job_type="Create_MongoDB",
            resource_ids={"instance_id": "d87f5b33049144ec95f0cab0a5f22cfbin02"},
            begin_time="2021-07-12T09:22:04+0000",
            end_time="2021-07-12T10:10:13+0000",
            progress=100.0,
        ),
    ),
    (
        "geminidb AE",
        "rds-list",
        GEMINIDB_AE,
        "6f85e061-04dd-42e7-86d6-d3b1e40aac2e",
        expected(
            format="rds-list",
            status=RUNNING,
            upstream_status="Running",
            job_id="6f85e061-04dd-42e7-86d6-d3b1e40aac2e",
            job_type="CreateCassandra",
            resource_ids={"instance_id": "27a045b6bf9e46f691f81366d398cb04in06"},
            begin_time="2023-09-12T06:44:01+0000",
            end_time="2023-09-12T06:44:03+0000",
            progress=14.0,
        ),
    ),
    (
        "taurusdb AE",
        "rds",
        TAURUSDB_AE,
        None,
        expected(
            format="rds",
            status=SUCCESS,
            upstream_status="Completed",
            terminal=True,
            job_id="31b8ae23-c687-4d80-b7b4-42a66c9bb886",
            job_type="CreateGaussDBforMySQLInstance",
            resource_ids={
                "instance_id": "a48e43ff268f4c0e879652d65e63d0fbin07",
                "resource_ids[0]": "a48e43ff268f4c0e879652d65e63d0fbin07.vm",
                "resource_ids[1]": "a48e43ff268f4c0e879652d65e63d0fbin07.volume",
            },
            begin_time="2018-08-06T10:41:14+0800",
            end_time="2018-08-06T16:41:14+0000",
        ),
    ),
    (
        "dcs AE",
        "dcs",
        DCS_AE,
        None,
        expected(
            format="dcs",
            status=SUCCESS,
            terminal=True,
            job_id="ff8080818822bbf70188235afc24141a",
            job_type="masterStandbySwapJob",
            begin_time="1684191545379",
            end_time="1684191548248",
        ),
    ),
    (
        "sfs-turbo AE",
        "sfs-turbo",
        SFS_TURBO_AE,
        None,
        expected(
            format="sfs-turbo",
            status=SUCCESS,
            upstream_status="success",
            terminal=True,
            job_id="26f6b565-xxxx-XXXX-xxxx-03f0bd975433",
            job_type="bind_ldap",
            begin_time="2023-07-26 09:33:58",
            end_time="2023-07-26 09:33:58",
        ),
    ),
]


@pytest.mark.parametrize(
    ("answer_format", "raw", "job_id", "want"),
    [pytest.param(fmt, raw, job_id, want, id=name) for name, fmt, raw, job_id, want in EXAMPLES],
)
def test_vendor_example_parses_to_its_snapshot(
    answer_format: str, raw: bytes, job_id: str | None, want: dict[str, Any]
) -> None:
    body = orjson.loads(raw)
    untouched = orjson.loads(raw)
    answer = parse_answer(answer_format, body, job_id=job_id)
    assert snapshot(answer) == want
    assert body == untouched  # the caller's document is not changed


@pytest.mark.parametrize(
    ("name", "answer_format"),
    [(name, entry.answer_format) for name, entry in SERVICES.items()],
)
def test_every_service_names_a_format_with_a_vendor_example(name: str, answer_format: str) -> None:
    assert answer_format in FORMATS
    assert any(fmt == answer_format for _, fmt, _, _, _ in EXAMPLES), name


@pytest.mark.parametrize(
    ("answer_format", "raw", "job_id"),
    [pytest.param(fmt, raw, job_id, id=name) for name, fmt, raw, job_id, _ in EXAMPLES],
)
def test_every_vendor_examples_times_are_read_as_times(
    answer_format: str, raw: bytes, job_id: str | None
) -> None:
    # What a job's duration is learned from, and its schedule planned with.
    answer = parse_answer(answer_format, orjson.loads(raw), job_id=job_id)
    times = [answer.begin_time, answer.end_time]
    times += [t for sub in answer.sub_jobs for t in (sub.begin_time, sub.end_time)]
    reported = [t for t in times if t is not None]
    assert answer.begin_time is not None
    assert all(parse_time(t) is not None for t in reported), reported
    began = parse_time(answer.begin_time)
    ended = parse_time(answer.end_time)
    assert began is not None and (ended is None or ended >= began)
    assert 1_262_304_000 < began < 1_893_456_000  # 2010-2030: read in the right unit


def test_the_vendor_examples_keep_their_details() -> None:
    ims = parse_answer("ims", orjson.loads(IMS_IMPORT_OVA))
    assert ims.entities["sub_jobs_list"] == ["9a175ac892fa13420193006c29e133f0"]
    assert "sub_jobs" not in ims.entities  # only the vendor's own fields
    assert ims.sub_jobs[0].entities["image_id"] == "fc496c19-40c2-4220-8b1a-eba9d53fca7b"
    elb = parse_answer("elb", orjson.loads(ELB_AE))
    assert elb.sub_jobs[0].entities == {
        "resources": [
            {"resource_id": "9f5b432c-987e-4777-a1bc-6642be4b2b50", "resource_type": "loadbalancer"}
        ]
    }
    assert elb.error_code is None and elb.fail_reason is None  # "" is no error
    rds = parse_answer("rds", orjson.loads(RDS_AE))
    assert rds.entities["instance"]["datastore"] == {"type": "mysql", "version": "5.7"}
    cce = parse_answer("cce", orjson.loads(CCE_AE))
    assert cce.entities["resourceName"] == "cluster-name"
    assert cce.sub_jobs[0].entities["extendParam"] == {
        "serverID": "fd3b4ac0-9606-11e8-baa8-0255ac10215d"
    }
    evs = parse_answer("evs", orjson.loads(EVS_AE))
    assert evs.end_time is None  # "" while RUNNING


# ------------------------------------------------------------ status mapping

STATUS_CASES: list[tuple[str, str, str, bool]] = [
    # ECS family (notes §1c, §2c, §3c, §4a): jobwatchd's names already.
    ("ecs", "INIT", INIT, False),
    ("ecs", "RUNNING", RUNNING, False),
    ("ecs", "SUCCESS", SUCCESS, True),
    ("ecs", "FAIL", FAIL, True),
    ("ecs", "PENDING_PAYMENT", "PENDING_PAYMENT", False),
    ("evs", "WAITING_EXECUTE", "WAITING_EXECUTE", False),
    ("evs", "LISTENING", "LISTENING", False),
    ("ims", "RUNNING", RUNNING, False),
    ("eip", "FAIL", FAIL, True),
    # CCE (notes §5c).
    ("cce", "Initializing", INIT, False),
    ("cce", "Running", RUNNING, False),
    ("cce", "Success", SUCCESS, True),
    ("cce", "Failed", FAIL, True),
    # ELB v3 (notes §6c).
    ("elb", "INIT", INIT, False),
    ("elb", "RUNNING", RUNNING, False),
    ("elb", "ROLLBACKING", "ROLLBACKING", False),
    ("elb", "COMPLETE", SUCCESS, True),
    ("elb", "SUCCESS", SUCCESS, True),
    ("elb", "FAIL", FAIL, True),
    ("elb", "ROLLBACK_FAIL", FAIL, True),
    ("elb", "CANCEL", FAIL, True),
    # The RDS family (notes §7).
    ("rds", "Running", RUNNING, False),
    ("rds", "Completed", SUCCESS, True),
    ("rds", "Failed", FAIL, True),
    ("rds", "Pending", "Pending", False),
    ("rds-list", "Failed", FAIL, True),
    # DCS (notes §8c).
    ("dcs", "INIT", INIT, False),
    ("dcs", "RUNNING", RUNNING, False),
    ("dcs", "SUCCESS", SUCCESS, True),
    ("dcs", "FAIL", FAIL, True),
    # SFS Turbo (notes §9c).
    ("sfs-turbo", "waiting", "waiting", False),
    ("sfs-turbo", "running", RUNNING, False),
    ("sfs-turbo", "success", SUCCESS, True),
    ("sfs-turbo", "failed", FAIL, True),
]


def with_status(answer_format: str, status: object) -> dict[str, Any]:
    """The format's vendor example with ``status`` in the job's status field."""
    example = {
        "ecs": ECS_AE,
        "evs": EVS_AE,
        "ims": IMS_IMPORT_OVA,
        "eip": EIP_DOC,
        "cce": CCE_AE,
        "elb": ELB_AE,
        "rds": TAURUSDB_AE,
        "rds-list": GEMINIDB_AE,
        "dcs": DCS_AE,
        "sfs-turbo": SFS_TURBO_AE,
    }[answer_format]
    body: dict[str, Any] = orjson.loads(example)
    holder = status_holder(answer_format, body)
    key = "phase" if answer_format == "cce" else "status"
    if status is MISSING:
        holder.pop(key)
    else:
        holder[key] = status
    return body


MISSING = object()


def status_holder(answer_format: str, body: dict[str, Any]) -> dict[str, Any]:
    if answer_format == "cce":
        holder: dict[str, Any] = body["status"]
    elif answer_format in {"elb", "rds"}:
        holder = body["job"]
    elif answer_format == "rds-list":
        holder = body["jobs"][0]
    else:
        holder = body
    return holder


@pytest.mark.parametrize(("answer_format", "vendor", "status", "terminal"), STATUS_CASES)
def test_statuses_map_to_jobwatchds(
    answer_format: str, vendor: str, status: str, terminal: bool
) -> None:
    answer = parse_answer(answer_format, with_status(answer_format, vendor))
    assert (answer.status, answer.upstream_status, answer.terminal) == (status, vendor, terminal)
    assert answer.terminal == is_terminal(answer.status)
    assert answer.status not in answer.unexpected_statuses  # documented: no log line


@pytest.mark.parametrize("answer_format", list(FORMATS))
@pytest.mark.parametrize(
    ("vendor", "status"),
    [
        ("SOMETHING_NEW", "SOMETHING_NEW"),
        ("TIMEOUT", "upstream:TIMEOUT"),
        ("PENDING", "upstream:PENDING"),
    ],
)
def test_unknown_statuses_pass_through_as_upstream_status_does(
    answer_format: str, vendor: str, status: str
) -> None:
    answer = parse_answer(answer_format, with_status(answer_format, vendor))
    assert answer.status == upstream_status(vendor) == status
    assert not answer.terminal
    assert status in answer.unexpected_statuses


# ------------------------------------------------------------ hostile answers


@pytest.mark.parametrize("answer_format", list(FORMATS))
@pytest.mark.parametrize(
    ("status", "message"),
    [
        (MISSING, "has no"),
        (None, "has no"),
        ("", "has no"),
        (7, "has no"),
        (["SUCCESS"], "has no"),
        ({"phase": "Success"}, "has no"),
        ("S" * 65, "printable ASCII"),
        ("SUCC\nESS", "printable ASCII"),
        ("SUCCÈS", "printable ASCII"),
    ],
)
def test_a_missing_or_unusable_status_is_malformed(
    answer_format: str, status: object, message: str
) -> None:
    with pytest.raises(MalformedResponse, match=message):
        parse_answer(answer_format, with_status(answer_format, status))


@pytest.mark.parametrize("answer_format", list(FORMATS))
@pytest.mark.parametrize("body", [None, [], "SUCCESS", 3, b"{}", [{"status": "SUCCESS"}]])
def test_a_body_that_is_not_an_object_is_malformed(answer_format: str, body: object) -> None:
    with pytest.raises(MalformedResponse, match="not a JSON object"):
        parse_answer(answer_format, body)


@pytest.mark.parametrize(
    ("answer_format", "body", "message"),
    [
        ("elb", {"job": [], "request_id": "r"}, "no 'job' object"),
        ("elb", {"status": "COMPLETE"}, "no 'job' object"),
        ("rds", {"job": "Completed"}, "no 'job' object"),
        ("rds", {"jobs": []}, "no 'job' object"),
        ("rds-list", {"jobs": {"id": "j"}}, "no 'jobs' list"),
        ("rds-list", {"job": {"status": "Running"}}, "no 'jobs' list"),
        ("cce", {"status": "Running"}, "no status.phase"),
        ("cce", {"status": {"reason": "x"}}, "no status.phase"),
    ],
)
def test_a_wrong_envelope_is_malformed(answer_format: str, body: object, message: str) -> None:
    with pytest.raises(MalformedResponse, match=message):
        parse_answer(answer_format, body)


def sub_jobs_of(answer_format: str, body: dict[str, Any]) -> list[Any]:
    """The format's sub-job list in ``body`` (created empty where the example has none)."""
    if answer_format == "cce":
        subs: list[Any] = body["spec"]["subJobs"]
    elif answer_format == "elb":
        subs = body["job"]["sub_jobs"]
    elif answer_format == "ims":
        subs = body["entities"]["sub_jobs_result"]
    elif answer_format == "sfs-turbo":
        subs = body.setdefault("sub_jobs", [])
    else:
        subs = body["entities"].setdefault("sub_jobs", [])
    return subs


def sub_job(answer_format: str, index: int, status: object) -> dict[str, Any]:
    if answer_format == "cce":
        return {"metadata": {"uid": f"sub-{index}"}, "status": {"phase": status}}
    return {"job_id": f"sub-{index}", "status": status}


SUB_JOB_FORMATS = ["ecs", "evs", "ims", "eip", "cce", "elb", "sfs-turbo"]


@pytest.mark.parametrize("answer_format", SUB_JOB_FORMATS)
def test_huge_sub_job_lists_are_refused(answer_format: str) -> None:
    body = with_status(answer_format, "RUNNING")
    subs = sub_jobs_of(answer_format, body)
    subs[:] = [sub_job(answer_format, i, "RUNNING") for i in range(11)]
    assert len(parse_answer(answer_format, body, max_sub_jobs=11).sub_jobs) == 11
    with pytest.raises(TooManySubJobs, match="11"):
        parse_answer(answer_format, body, max_sub_jobs=10)
    subs[:] = [sub_job(answer_format, i, "RUNNING") for i in range(MAX_SUB_JOBS + 1)]
    with pytest.raises(TooManySubJobs):
        parse_answer(answer_format, body)


@pytest.mark.parametrize("answer_format", SUB_JOB_FORMATS)
def test_unusable_sub_jobs_are_skipped_not_fatal(answer_format: str) -> None:
    body = with_status(answer_format, "RUNNING")
    good = sub_job(answer_format, 1, "RUNNING")
    sub_jobs_of(answer_format, body)[:] = [
        "not an object",
        7,
        None,
        sub_job(answer_format, 2, None),
        sub_job(answer_format, 3, "X" * 65),
        sub_job(answer_format, 4, ["RUNNING"]),
        {"status": "RUNNING"},  # no id
        good,
    ]
    answer = parse_answer(answer_format, body)
    assert [sub.job_id for sub in answer.sub_jobs] == ["sub-1"]


@pytest.mark.parametrize("answer_format", SUB_JOB_FORMATS)
def test_sub_job_lists_of_the_wrong_type_are_no_sub_jobs(answer_format: str) -> None:
    body = with_status(answer_format, "RUNNING")
    holder: dict[str, Any]
    if answer_format == "cce":
        holder, key = body["spec"], "subJobs"
    elif answer_format == "elb":
        holder, key = body["job"], "sub_jobs"
    elif answer_format == "ims":
        holder, key = body["entities"], "sub_jobs_result"
    elif answer_format == "sfs-turbo":
        holder, key = body, "sub_jobs"
    else:
        holder, key = body["entities"], "sub_jobs"
    holder[key] = {"job_id": "x", "status": "RUNNING"}
    assert parse_answer(answer_format, body).sub_jobs == ()


def test_the_ims_sub_job_id_list_is_bounded() -> None:
    body = orjson.loads(IMS_IMPORT_OVA)
    body["entities"]["sub_jobs_list"] = ["x"] * 11
    assert parse_answer("ims", body, max_sub_jobs=11).sub_jobs_total == 11
    with pytest.raises(TooManySubJobs, match="sub-job ids"):
        parse_answer("ims", body, max_sub_jobs=10)


@pytest.mark.parametrize(
    ("answer_format", "set_text", "read"),
    [
        ("ecs", lambda b: b.__setitem__("fail_reason", "r" * 5000), lambda a: a.fail_reason),
        ("cce", lambda b: b["status"].__setitem__("reason", "r" * 5000), lambda a: a.fail_reason),
        ("elb", lambda b: b["job"].__setitem__("error_msg", "r" * 5000), lambda a: a.fail_reason),
        ("rds", lambda b: b["job"].__setitem__("fail_reason", "r" * 5000), lambda a: a.fail_reason),
        ("rds-list", lambda b: b["jobs"][0].__setitem__("name", "n" * 5000), lambda a: a.job_type),
        ("dcs", lambda b: b.__setitem__("fail_resson", "r" * 5000), lambda a: a.fail_reason),
        ("sfs-turbo", lambda b: b.__setitem__("error_code", "c" * 5000), lambda a: a.error_code),
    ],
)
def test_long_strings_are_bounded(
    answer_format: str, set_text: Callable[[Any], None], read: Callable[[ServiceAnswer], Any]
) -> None:
    body = with_status(answer_format, "RUNNING")
    set_text(body)
    value = read(parse_answer(answer_format, body))
    assert isinstance(value, str)
    assert len(value) == MAX_TEXT_LENGTH
    assert value.endswith("\u2026")


@pytest.mark.parametrize("bad_id", ["", "a" * 65, "a\nb", 12, None, ["id"]])
def test_ids_that_are_not_ids_are_left_out(bad_id: object) -> None:
    body = orjson.loads(RDS_AE)
    body["job"]["instance"]["id"] = bad_id
    body["job"]["id"] = bad_id
    body["job"]["entities"]["resource_id"] = [bad_id, "ok-1"]
    answer = parse_answer("rds", body)
    assert answer.job_id is None
    assert dict(answer.resource_ids) == {"resource_ids[0]": "ok-1"}


def test_rds_resource_id_list_is_bounded() -> None:
    body = orjson.loads(TAURUSDB_AE)
    body["job"]["entities"]["resource_ids"] = ["r"] * 11
    with pytest.raises(TooManySubJobs, match="resource ids"):
        parse_answer("rds", body, max_sub_jobs=10)


def test_elb_entity_lists_are_bounded() -> None:
    body = orjson.loads(ELB_AE)
    body["job"]["sub_jobs"][0]["entities"] = [
        {"resource_id": "r", "resource_type": "listener"}
    ] * 11
    with pytest.raises(TooManySubJobs, match="entities"):
        parse_answer("elb", body, max_sub_jobs=10)


@pytest.mark.parametrize(
    ("reported", "progress"),
    [
        ("60%", 60.0),
        (" 7.5 % ", 7.5),
        ("100%", 100.0),
        ("", None),
        ("%", None),
        ("abc%", None),
        ("150%", None),
        ("-1%", None),
        ("nan%", None),
        ("inf", None),
        ("9" * 400, None),
        ("\u0666\u0660%", None),  # Arabic-Indic digits: float() reads them, the vendor does not
        (10**400, None),
        (True, None),
        (None, None),
        ([60], None),
        (42, 42.0),
        (0.5, 0.5),
    ],
)
def test_progress_is_a_bounded_percentage(reported: object, progress: float | None) -> None:
    rds = orjson.loads(RDS_AE)
    rds["job"]["process"] = reported
    assert parse_answer("rds", rds).progress == progress
    ims = orjson.loads(IMS_IMPORT)
    ims["entities"]["process_percent"] = reported
    assert parse_answer("ims", ims).progress == progress


def test_geminidb_picks_the_job_asked_for_out_of_the_list() -> None:
    body = orjson.loads(GEMINIDB_AE)
    other = {**body["jobs"][0], "id": "other-job", "status": "Failed"}
    body["jobs"] = [other, *body["jobs"]]
    answer = parse_answer("rds-list", body, job_id="6f85e061-04dd-42e7-86d6-d3b1e40aac2e")
    assert (answer.status, answer.progress) == (RUNNING, 14.0)
    assert parse_answer("rds-list", body, job_id="other-job").status == FAIL
    with pytest.raises(JobNotListed, match="lists 2 jobs, not exactly one"):
        parse_answer("rds-list", body)
    with pytest.raises(JobNotListed, match="lists 0 jobs with the id asked for"):
        parse_answer("rds-list", body, job_id="missing")
    with pytest.raises(JobNotListed):
        parse_answer("rds-list", {"jobs": [], "total_count": 0})
    body["jobs"] = [other] * 11
    with pytest.raises(TooManySubJobs, match="jobs"):
        parse_answer("rds-list", body, job_id="other-job", max_sub_jobs=10)


def test_ecs_family_sub_job_failure_text_falls_back_to_errorcode_message() -> None:
    body = orjson.loads(ECS_AE)
    sub = body["entities"]["sub_jobs"][0]
    sub["status"] = "FAIL"
    sub["entities"]["errorcode_message"] = "Ecs.0001 quota exceeded"
    answer = parse_answer("ecs", body)
    assert answer.sub_jobs[0].fail_reason == "Ecs.0001 quota exceeded"
    assert answer.sub_jobs_failed == 1


def test_an_unknown_format_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="unknown answer format 'sdrs': known are ecs, evs"):
        parse_answer("sdrs", {})


# ------------------------------------------------------------ as a JobAnswer


@pytest.mark.parametrize(
    ("answer_format", "raw", "job_id"),
    [pytest.param(fmt, raw, job_id, id=name) for name, fmt, raw, job_id, _ in EXAMPLES],
)
def test_an_answer_drives_the_state_machine(
    answer_format: str, raw: bytes, job_id: str | None
) -> None:
    answer: JobAnswer = parse_answer(answer_format, orjson.loads(raw), job_id=job_id)
    transitions, after = observe(Snapshot(), answer)
    assert [t.to_status for t in transitions] == [
        *(sub.status for sub in answer.sub_jobs),
        answer.status,
    ]
    assert after.status == answer.status
    # The same answer again changes nothing.
    assert observe(after, answer) == ([], after)


def test_a_cce_job_progresses_through_its_phases() -> None:
    body = orjson.loads(CCE_AE)
    first = parse_answer("cce", body)
    transitions, after = observe(Snapshot(), first)
    assert [(t.kind, t.to_status) for t in transitions] == [
        ("subjob", SUCCESS),
        ("subjob", SUCCESS),
        ("job", RUNNING),
    ]
    body["status"] = {"phase": "Failed", "reason": "install master failed"}
    body["spec"]["subJobs"][1]["status"]["phase"] = "Failed"
    failed = parse_answer("cce", body)
    transitions, after = observe(after, failed)
    # The sub-job already at Success stays there: terminal is sticky.
    assert [(t.kind, t.from_status, t.to_status) for t in transitions] == [("job", RUNNING, FAIL)]
    assert failed.fail_reason == "install master failed"
    assert failed.terminal


# ------------------------------------------------------------ what polls read


@pytest.mark.parametrize(
    ("answer_format", "raw", "job_id", "want"),
    [pytest.param(fmt, raw, job_id, want, id=name) for name, fmt, raw, job_id, want in EXAMPLES],
)
def test_classify_reads_each_vendor_example_in_its_format(
    answer_format: str, raw: bytes, job_id: str | None, want: dict[str, Any]
) -> None:
    asked = job_id or want["job_id"] or "some-job"
    outcome = classify(200, {}, raw, now=0.0, job_id=asked, answer_format=answer_format)
    assert outcome.kind is OutcomeKind.OBSERVED, outcome.error
    answer = outcome.response
    assert answer is not None
    assert answer.status == want["status"]
    assert [(sub.job_id, sub.status) for sub in answer.sub_jobs] == [
        (sub_id, status) for sub_id, status, _, _ in want["sub_jobs"]
    ]
    assert answer.progress == want["progress"]
    assert answer.sub_jobs_total == want["sub_jobs_total"]


@pytest.mark.parametrize("answer_format", ["ecs", "evs", "eip"])
def test_the_ecs_shaped_formats_are_polled_through_the_lazy_ecs_parser(
    answer_format: str,
) -> None:
    raw = {"ecs": ECS_AE, "evs": EVS_AE, "eip": EIP_DOC}[answer_format]
    polled = poll_parser(answer_format)(orjson.loads(raw))
    full = parse_answer(answer_format, orjson.loads(raw))
    assert isinstance(polled, JobResponse)
    assert (polled.status, polled.job_id, polled.sub_jobs_total, polled.progress) == (
        full.status,
        full.job_id,
        full.sub_jobs_total,
        full.progress,
    )
    assert [(s.job_id, s.status) for s in polled.sub_jobs] == [
        (s.job_id, s.status) for s in full.sub_jobs
    ]


_ANSWER_FIELDS = (
    "status",
    "job_id",
    "job_type",
    "entities",
    "recorded_entities",
    "error_code",
    "fail_reason",
    "begin_time",
    "end_time",
    "sub_jobs_total",
    "sub_jobs_succeeded",
    "sub_jobs_failed",
    "progress",
    "code",
    "message",
    "unexpected_statuses",
)
_SUB_JOB_FIELDS = (
    "job_id",
    "status",
    "upstream_status",
    "job_type",
    "entities",
    "error_code",
    "fail_reason",
    "begin_time",
    "end_time",
)
_VARIANT_EXAMPLES = [
    pytest.param(fmt, raw, job_id, id=name)
    for name, fmt, raw, job_id, _ in EXAMPLES
    if fmt not in {"ecs", "evs", "eip"}
]


def _read(
    parse: Callable[..., ServiceAnswer | JobAnswer], sent: bytes, job_id: str | None, limit: int
) -> tuple[Any, ...]:
    """Everything a poll and a record read of ``sent`` parsed, or the error raised."""
    try:
        answer = parse(orjson.loads(sent), job_id=job_id, max_sub_jobs=limit)
    except MalformedResponse as exc:
        return type(exc), str(exc)
    # Once parsed, reading never fails: a lazy answer is described at write time.
    fields = tuple(getattr(answer, name) for name in _ANSWER_FIELDS)
    subs = tuple(tuple(getattr(sub, name) for name in _SUB_JOB_FIELDS) for sub in answer.sub_jobs)
    return (*fields, subs)


def _variations(body: Any) -> Any:
    """``body`` as sent, then with each key (to three levels) removed, set to a
    wrong type, an oversized string or an unknown status."""
    yield body
    stack: list[tuple[Any, int]] = [(body, 0)]
    while stack:
        node, depth = stack.pop()
        children = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
        for key, value in children:
            replacements: tuple[Any, ...] = (
                None,
                7,
                "x" * (MAX_TEXT_LENGTH + 9),
                "Weird",
                [],
                {},
                [{}, {}],
            )
            for replacement in replacements:
                node[key] = replacement
                yield body
            if isinstance(node, dict):
                del node[key]
                yield body
            node[key] = value
            if isinstance(value, dict | list) and depth < 3:
                stack.append((value, depth + 1))


@pytest.mark.parametrize(("answer_format", "raw", "job_id"), _VARIANT_EXAMPLES)
def test_polls_read_the_variant_formats_as_parsing_does(
    answer_format: str, raw: bytes, job_id: str | None
) -> None:
    # Polls check an answer and describe it only when a transition is recorded:
    # what they read must be what the full parse reads, and describing an answer
    # that passed the check must never fail (it happens at write time).
    body = orjson.loads(raw)
    compared = 0
    for variant in _variations(body):
        for limit in (1, MAX_SUB_JOBS):
            sent = orjson.dumps(variant)
            polled = _read(poll_parser(answer_format), sent, job_id, limit)
            assert polled == _read(FORMATS[answer_format], sent, job_id, limit), sent
            compared += 1
    assert compared > 50
    lazy = poll_parser(answer_format)(orjson.loads(raw), job_id=job_id)
    assert isinstance(lazy, LazyAnswer)
    assert lazy.described == parse_answer(answer_format, orjson.loads(raw), job_id=job_id)


def test_poll_parser_refuses_an_unknown_format() -> None:
    with pytest.raises(KeyError, match="known are"):
        poll_parser("nope")


V3_NOT_FOUND = {"error_code": "CCE.01404001", "error_msg": "The job does not exist."}


@pytest.mark.parametrize("answer_format", sorted(FORMATS))
def test_error_bodies_in_any_format_are_read_as_errors(answer_format: str) -> None:
    not_found = classify(404, {}, orjson.dumps(V3_NOT_FOUND), now=0.0, answer_format=answer_format)
    assert not_found.kind is OutcomeKind.NOT_FOUND
    assert not_found.error is not None and not_found.error.code == "CCE.01404001"
    throttled = classify(
        200,
        {"Retry-After": "7"},
        orjson.dumps({"error_code": "APIGW.0308", "error_msg": "throttled"}),
        now=0.0,
        answer_format=answer_format,
    )
    assert (throttled.kind, throttled.retry_after) == (OutcomeKind.THROTTLED, 7.0)
    broken = classify(200, {}, b'{"job": {', now=0.0, answer_format=answer_format)
    assert broken.kind is OutcomeKind.TRANSIENT
    server = classify(503, {}, orjson.dumps(V3_NOT_FOUND), now=0.0, answer_format=answer_format)
    assert server.kind is OutcomeKind.TRANSIENT


def test_a_list_answer_without_the_job_means_it_is_not_found() -> None:
    empty = orjson.dumps({"jobs": [], "total_count": 0})
    outcome = classify(200, {}, empty, now=0.0, job_id="gone", answer_format="rds-list")
    assert outcome.kind is OutcomeKind.NOT_FOUND
    assert outcome.error is not None and "0 jobs" in outcome.error.message


@pytest.mark.parametrize(
    ("answer_format", "raw"),
    [
        ("cce", CCE_AE),
        ("elb", ELB_AE),
        ("rds", RDS_AE),
        ("dcs", DCS_AE),
        ("sfs-turbo", SFS_TURBO_AE),
    ],
)
def test_an_answer_about_another_job_is_ignored(answer_format: str, raw: bytes) -> None:
    outcome = classify(200, {}, raw, now=0.0, job_id="not-this-one", answer_format=answer_format)
    assert outcome.kind is OutcomeKind.TRANSIENT
    assert outcome.error is not None and outcome.error.code == JOB_ID_MISMATCH_CODE


def test_sub_jobs_listed_elsewhere_are_recorded_in_the_ecs_shape() -> None:
    cce = parse_answer("cce", orjson.loads(CCE_AE))
    recorded = cce.recorded_entities
    assert recorded["sub_jobs_total"] == len(cce.sub_jobs) > 0
    assert [
        (sub["job_id"], sub["status"], sub["upstream_status"]) for sub in recorded["sub_jobs"]
    ] == [(sub.job_id, sub.status, sub.upstream_status) for sub in cce.sub_jobs]
    assert {key: recorded[key] for key in cce.entities} == cce.entities
    ecs = parse_answer("ecs", orjson.loads(ECS_AE))
    assert ecs.recorded_entities is ecs.entities  # the ECS shape has them already
