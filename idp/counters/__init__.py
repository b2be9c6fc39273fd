"""Counters that may be lost without losing anything else: lockout, Access-ID pauses, rate limits.

One interface (``CounterStore``), one Redis implementation shared by every process, one in the
database, shared too, that stands in while Redis does not answer (``FallbackCounters``) and keeps
Redis's locks so that a Redis restart lifts none (``DurableLocks``), and one in-process
implementation (``memory://``, for a single-process development run).
"""
