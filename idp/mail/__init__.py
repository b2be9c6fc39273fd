"""Mail: a transactional outbox in the database, delivered by ``idp worker``."""
