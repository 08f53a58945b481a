"""Users, login sessions, login throttling and the session signing secret."""
