"""Event contracts: schema catalog, wire codec, natural JSON, headers, topics, ids."""
