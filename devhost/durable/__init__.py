"""A local stand-in for the Durable Functions extension, and a replay harness for tests.

The Python SDK (`azure-functions-durable`) replays orchestrators on the worker side in
Azure and here alike; what Azure adds is the extension (with the Durable Task Framework
below it): it keeps each instance's history, turns the SDK's actions into scheduled
work, runs retries, timers, sub-orchestrations and continue-as-new, and serves the HTTP
API the SDK's client calls. This package plays that part, as devhost plays the
Functions host's:

  history.py    extension-shaped history events and the orchestrationTrigger payload
  replay.py     the SDK side: one history through `Orchestrator` handling → its state
  decisions.py  the extension side: the SDK's actions replayed against the history →
                the events it schedules, whether the instance is done
  instances.py  one instance's episodes: messages in, history, status, work out
  framework.py  a deterministic driver on a virtual clock, for tests and benchmarks
  api.py        the extension's HTTP API (start, status, terminate, raise event)
  standin.py    the driver `python -m devhost` runs: the worker, the wall clock, storage
  store.py, table_store.py   where instances live: memory, or Azure Table Storage

Nothing here is deployed (devhost/ is in .funcignore).
"""
