"""The engine: what runs. :mod:`.scheduler` keeps each account's next polls and
rate limit, :mod:`.poller` takes due jobs from it, :mod:`.tracker` owns the
active jobs and carries out what :mod:`jobwatchd.policy` decides for each poll,
:mod:`.delivery` feeds each sink from the event log, :mod:`.fleet` shares the
work among instances on PostgreSQL."""
