"""The HTTP layer: FastAPI routes, content negotiation, bodies, errors, bundles."""
