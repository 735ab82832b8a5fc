"""The host runtime: the owner thread that runs every host call and the worker threads
beside it (`owner`, `pool`), the byte-bounded registry (`registry`), the static patterns
the process holds (`patterns`), the cache of backends, analyses and factorizations
(`cache`, `entry`, `digest`), and the solve of a vmapped batch (`batch`)."""
