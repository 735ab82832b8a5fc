"""Matrix-free operators made sparse: Jacobian patterns, their colouring, the coloured
products that materialise a matrix, `detect_sparsity`, and the implicit-adjoint context."""
