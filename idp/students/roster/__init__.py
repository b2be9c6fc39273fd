"""OneRoster 1.2 CSV rosters: reading the files, importing them, reporting what changed."""
