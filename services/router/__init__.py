"""The router: hub.in.* -> policy -> hub.out.*, hub.rejected.*, hub.audit."""
