"""The course shop's domain: pricing (pure, integer fen), records and errors, the storage ports,
the decisions (handlers, catalogue rules) and the typed service its callers use. Not the auction
engine, so not under engine/; storage lives in persistence/shop/."""
