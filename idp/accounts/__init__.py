"""Accounts: who signs in, how passwords are kept, and the OP sessions they hold."""
