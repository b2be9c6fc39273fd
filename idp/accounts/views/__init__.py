"""The hosted account pages: sign-in, registration, Account Preferences, recovery, forced change."""
