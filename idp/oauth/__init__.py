"""OAuth 2.0 / OpenID Connect: clients, codes, consent, claims and the Authlib wiring."""
