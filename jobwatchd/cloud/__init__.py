"""The cloud: how jobwatchd asks a service about a job and reads its answer.

- :mod:`.ecs`: the ECS-family answer format, parsed into a
  :class:`jobwatchd.statemachine.JobAnswer` (pure);
- :mod:`.errors`: the vendor's error bodies (pure);
- :mod:`.signing`: AK/SK request signing (pure);
- :mod:`.auth`: the credential providers, one per account;
- :mod:`.client`: the HTTP client, and :func:`.client.classify`, which turns an
  HTTP answer into an :class:`jobwatchd.outcome.Outcome` (pure);
- :mod:`.simulator`: the simulated cloud that ``--simulate`` and the tests run.
"""
