"""The bridge between a traced solve and the host: the handle digest of the values
(`handle`), the callback primitive (`callback`), the solve callback (`solve`) and the mapping
of host statuses onto `lineax.RESULTS` (`status`)."""
