"""The local HTTP API: one route table (:mod:`.routes`) over the handlers of jobs
(:mod:`.jobs`), event streams (:mod:`.events`) and dead letters
(:mod:`.deadletters`), answering JSON or RFC 9457 problems (:mod:`.responses`),
described by :mod:`.openapi`, served with a connection bound (:mod:`.server`)."""
