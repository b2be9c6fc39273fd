"""Counters that may be lost without losing anything else: lockout, Access-ID pauses, rate limits.

One interface (``CounterStore``), one Redis implementation shared by every process, one
in-process implementation (``memory://`` for a single-process development run), and one
fallback that uses the in-process counters while Redis does not answer.
"""
