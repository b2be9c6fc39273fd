"""The counter table: the database's counters while Redis is down, and the locks that outlive Redis."""

from __future__ import annotations

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.db import Base, utc_time_or_none


class CounterEntry(Base):
    """One key's count and lock, as ``MemoryCounters`` keeps them, shared by every process."""

    __tablename__ = "counter_entry"

    # The key Redis gets (``Keys.name``: the username or Access ID as a keyed hash, never in clear).
    key: Mapped[str] = mapped_column(String(512), primary_key=True)
    # Attempts or hits counted in the window that ends at ``count_ends`` (none counted once it has).
    # While locked the window is closed; the attempt that locked leaves its count for its own
    # answer to read, and the first refusal after it sets 0 (see idp.counters.database).
    counted: Mapped[int] = mapped_column(Integer, default=0)
    count_ends: Mapped[utc_time_or_none]
    locked_until: Mapped[utc_time_or_none]
