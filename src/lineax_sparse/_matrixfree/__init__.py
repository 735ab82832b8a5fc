"""Matrix-free operators made sparse: Jacobian patterns and their colouring (`jacobian`),
pytrees as vectors (`structure`), the coloured products that materialise a matrix
(`materialise`), `detect_sparsity` (`sparsity`), and the implicit-adjoint context
(`adjoint`)."""
