"""Pure functions of arrays and keys: masks, losses, patches and tokens, the EMA update."""
