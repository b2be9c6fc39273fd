"""The district console: staff accounts with roles and a second factor, the accounts they manage,
emulation, and the admin JSON API, all over the same services."""
