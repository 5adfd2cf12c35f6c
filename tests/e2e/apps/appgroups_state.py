"""A module global of an interpreter: apps/appgroups.py sets and reads it."""
value = None
