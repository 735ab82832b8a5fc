"""The host runtime: the owner thread that runs every native call, the byte-bounded
registry, the patterns the process holds, and the cache of analyses and factorizations."""
