"""The community's adapters (MongoDB collections `community_*`, Redis rate-limit counters): they
store and load; decisions are in community/."""
