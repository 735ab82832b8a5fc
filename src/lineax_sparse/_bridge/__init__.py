"""The bridge between a traced solve and the host: the handle digest of the values, the
callback primitive, and the mapping of host statuses onto `lineax.RESULTS`."""
