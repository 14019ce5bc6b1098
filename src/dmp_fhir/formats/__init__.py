"""Wire formats other than FHIR JSON, converted at the HTTP edge only."""
