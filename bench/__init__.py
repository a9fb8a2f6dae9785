"""The notebook_actors benchmark suite: ``python -m bench`` (``make bench``).

Every figure is measured for notebook_actors and for its peers (multiprocessing,
trio-parallel, ipyparallel, tractor where it installs) and for the floor (a raw trio
Unix socket with msgspec framing, a bare ``python -c "import trio, msgspec"``), with
the same definition for everyone. Each sample runs in a fresh worker process; rounds
interleave the peers so that machine noise hits all of them alike. See
``docs/performance.md`` for the definitions and the latest table.
"""
