"""The web dashboard every coordinator replica can serve (docs/dashboard.md).

Modules, one job each: ``snapshot`` (cheap immutable copies of the mirror),
``tracker`` (history learnt from successive snapshots), ``layout`` (DAG
layers and critical path), ``views`` (snapshot -> JSON documents),
``model`` (frames at a bounded rate, one worker thread), ``live``
(server-sent events), ``auth`` (who may act), ``server`` (aiohttp routes).
The page itself lives in ``static/``. The dashboard reads etcd only through
the etcd layer and never writes to it.
"""

from workhive.coordinator.dashboard.server import Dashboard

__all__ = ["Dashboard"]
