"""What an import did, or would do: counts per kind and outcome, and every rejected row."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KINDS = ("schools", "students", "guardians", "links")
OUTCOMES = ("created", "updated", "unchanged", "removed")
# A report lists at most this many rejected rows: a wholly wrong file must not fill the memory.
MAX_REJECTED = 1000
# Rejected rows are listed file by file, in the order an import reads them, then by line.
FILE_ORDER = {"manifest.csv": 0, "orgs.csv": 1, "users.csv": 2, "roles.csv": 3, "demographics.csv": 4}


@dataclass(frozen=True)
class Rejected:
    file: str
    line: int
    reason: str


@dataclass
class ImportReport:
    counts: dict[str, dict[str, int]] = field(
        default_factory=lambda: {outcome: dict.fromkeys(KINDS, 0) for outcome in OUTCOMES}
    )
    rejected: list[Rejected] = field(default_factory=list)
    # Rejections beyond MAX_REJECTED: counted, not listed.
    more_rejected: int = 0
    # Parent accounts a removal unlinked from a student (each one mailed, as staff's unlink is).
    accounts_unlinked: int = 0
    dry_run: bool = False

    def count(self, outcome: str, kind: str, n: int = 1) -> None:
        self.counts[outcome][kind] += n

    def reject(self, file: str, line: int, reason: str) -> None:
        if len(self.rejected) < MAX_REJECTED:
            self.rejected.append(Rejected(file, line, reason))
        else:
            self.more_rejected += 1

    @property
    def is_rejected(self) -> bool:
        return bool(self.rejected)

    def as_rows(self) -> list[Rejected]:
        """The rejected rows by file, then line (the checks find them in another order)."""
        return sorted(self.rejected, key=lambda row: (FILE_ORDER.get(row.file, len(FILE_ORDER)), row.line))

    def as_json(self) -> dict[str, Any]:
        """The report as ``--json`` prints it."""
        document: dict[str, Any] = {outcome: dict(self.counts[outcome]) for outcome in OUTCOMES}
        document["rejected"] = [
            {"file": row.file, "line": row.line, "reason": row.reason} for row in self.as_rows()
        ]
        return document

    def as_text(self) -> str:
        """The report as a short table, then the rejected rows."""
        lines = [f"{'':10}" + "".join(f"{kind:>11}" for kind in KINDS)]
        for outcome in OUTCOMES:
            lines.append(f"{outcome:10}" + "".join(f"{self.counts[outcome][kind]:>11,}" for kind in KINDS))
        if self.accounts_unlinked:
            lines.append(
                f"parent accounts unlinked from a removed student (mailed): {self.accounts_unlinked:,}"
            )
        if self.rejected:
            lines.append(f"rejected: {len(self.rejected) + self.more_rejected:,} row(s); nothing was written")
            lines.extend(f"  {row.file}:{row.line}: {row.reason}" for row in self.as_rows())
            if self.more_rejected:
                lines.append(f"  … and {self.more_rejected:,} more")
        elif self.dry_run:
            lines.append("dry run: nothing was written")
        return "\n".join(lines)
