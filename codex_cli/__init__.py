"""codex: the operator CLI of the Codex video platform."""

import gc

__version__ = "0.1.0"

# A command imports SQLAlchemy, botocore, psycopg and typer: a few hundred thousand objects, which
# at Python's default threshold (a collection per 700 net allocations) cost hundreds of collections,
# ~0.1 s of every command's start-up. Cycles are still collected, in larger batches; long-running
# commands (`webhook listen`, `media worker`) keep a collector that runs, just less often.
gc.set_threshold(20_000, 20, 100)
