"""SymMIM: masked image modeling with symmetric checkerboard masks, in JAX."""
