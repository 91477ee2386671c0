"""The vendor's example response, verbatim from the API reference
(shared/seed/ecs-query-task-execution-status.md, "Example Response"), for
every test that holds jobwatchd or the simulator to it."""

from __future__ import annotations

from typing import Any

import orjson

VENDOR_EXAMPLE_BYTES = b"""
{
    "status": "SUCCESS",
    "entities": {
        "sub_jobs_total": 1,
        "sub_jobs": [
            {
                "status": "SUCCESS",
                "entities": {
                    "server_id": "bae51750-0089-41a1-9b18-5c777978ff6d"
                },
                "job_id": "2c9eb2c5544cbf6101544f0635672b60",
                "job_type": "createSingleServer",
                "begin_time": "2016-04-25T20:04:47.591Z",
                "end_time": "2016-04-25T20:08:21.328Z",
                "error_code": null,
                "fail_reason": null
            }
        ]
    },
    "job_id": "2c9eb2c5544cbf6101544f0602af2b4f",
    "job_type": "createServer",
    "begin_time": "2016-04-25T20:04:34.604Z",
    "end_time": "2016-04-25T20:08:41.593Z",
    "error_code": null,
    "fail_reason": null
}
"""
VENDOR_EXAMPLE: dict[str, Any] = orjson.loads(VENDOR_EXAMPLE_BYTES)
"""The example, parsed (read it, don't change it: copy what you modify)."""

JOB_ID = "2c9eb2c5544cbf6101544f0602af2b4f"
SUB_ID = "2c9eb2c5544cbf6101544f0635672b60"
SERVER_ID = "bae51750-0089-41a1-9b18-5c777978ff6d"
